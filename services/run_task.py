"""`learnagent do`: run the agent on a task in the repository, as one use case.

The CLI resolves the repository once (a `RepoInfo`: the `Repository` value and its HEAD) and
passes it here; the model gets the repository's promoted adapter from the registry through this
layer, so the agent layer never reads learning's state itself.
"""

from __future__ import annotations

from learnagent.core.repository import Repository


def promoted_adapter_of(repo: Repository):
    """A function giving `repo`'s promoted adapter as (version, folder), or None: reads the
    registry's pointer file each call (cheap), so a served model follows promotions."""
    from learnagent.learning.registry import promoted_adapter

    return lambda: promoted_adapter(repo.main_tree)


def open_model(model_cfg, repo: Repository, *, on_info=None):
    """The model a config names, with `repo`'s promoted adapter unless the config turns it off."""
    from learnagent.agent.models import load_model

    return load_model(model_cfg, promoted=promoted_adapter_of(repo), repo_key=repo.key, on_info=on_info)
