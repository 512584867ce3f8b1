"""Reaching a host and running one command there.

Modules, each importing only those listed above it:

``exec``     one command on one host: ``cd()``, run_command, run_quiet, host-named errors
``local``    the built-in ``local`` host: LocalTarget, commands run here without SSH
``channel``  one command over one SSH session channel: exec loop, deadline, stdin sender
``sshconfig`` ssh_config lookups, once per host and cheap with a block per server
``bastion``  ProxyJump: one connection per bastion, shared by the hosts behind it
``ssh``      open_target (SSH or local), HostConnection and its spare channel, host keys
"""
