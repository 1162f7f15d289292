"""Use cases that span layers (AGENTS.md "Layers"): each flow reads top to bottom in one function.

cli -> services -> agent | learning -> runtime -> store | sandbox -> core
"""
