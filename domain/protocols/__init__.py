"""Protocols: the definition a lab writes, its conditions, the compiled execution plan, and form checks.

Import the plan and forms modules from workflows: they need only pydantic and the standard library.
"""
