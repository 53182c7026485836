"""AgentOps Hub server: the companion hub (a Litestar app). Built out in later issues."""
