from django.urls import path

from pages import views

urlpatterns = [
    path("", views.revision),
    path("health", views.health),
]
