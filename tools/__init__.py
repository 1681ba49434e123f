"""Operator and developer tools that ship with the repository but not in the wheel."""
