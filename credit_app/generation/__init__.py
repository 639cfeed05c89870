"""Image generation: what a generation asks for, what it returns, and who does the work."""
