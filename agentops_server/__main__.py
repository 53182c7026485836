"""``python -m agentops_server``: the ``agentops-hub`` command, wherever pip put its scripts."""

from agentops_server.cli import main

if __name__ == "__main__":
    main(prog_name="agentops-hub")
