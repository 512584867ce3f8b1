"""A task, its hooks and a flow's stages as an indented tree (``--tree``, ``--dry-run``)."""

from .registry import Flow

__all__ = ["render_tree"]


def _origin(task):
    module = getattr(task.body, "__module__", "") or ""
    return "" if module.startswith("fake.") or module == "fake" else f"  ({module or 'fabfile'})"


def render_tree(registry, name, indent=""):
    """A task, its hooks and a flow's stages as an indented tree.

    Hooks from outside Fake (the fabfile, a library) are marked with the
    module they come from, like Deployer's ``dep tree``.
    """
    lines = []

    def walk(ref, depth, how, seen):
        task = registry.get(ref)
        label = f"{how}{task.name}{_origin(task)}"
        if task.name in seen:
            lines.append(f"{indent}{'  ' * depth}{label}  (cycle)")
            return
        lines.append(f"{indent}{'  ' * depth}{label}")
        seen = seen | {task.name}
        before, after = registry.hooks(task.name)
        for hook in before:
            walk(hook, depth + 1, "before: ", seen)
        if isinstance(task, Flow):
            for step in task.steps:
                walk(step, depth + 1, "", seen)
            if task.on_failure:
                walk(task.on_failure, depth + 1, "on failure: ", seen)
            if task.final:
                walk(task.final, depth + 1, "finally: ", seen)
        for hook in after:
            walk(hook, depth + 1, "after: ", seen)

    walk(name, 0, "", frozenset())
    return "\n".join(lines)
