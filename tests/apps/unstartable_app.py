"""An agent whose module fails at import, as one missing a dependency does."""

raise ModuleNotFoundError("No module named 'a_dependency_nobody_installed'")
