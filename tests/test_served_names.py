"""The served model names (runtime.export.served_name, the one rule) and the `[team] serve` URL:
pure functions, no server (tests/test_serve_team.py runs them against a real one)."""

import pytest

from learnagent.core.errors import UsageError
from learnagent.core.repository import StoredRepository, segment_of
from learnagent.runtime.export import served_name
from learnagent.runtime.serving import served_base, server_url


def test_team_names_become_one_stable_unique_segment_and_local_keys_stay():
    assert served_name("0123456789ab", "v0003") == "learnagent-0123456789ab-v0003"  # as before: local keys
    team = served_name("github.com/acme/api", "v0003")
    assert team.startswith("learnagent-github.com_acme_api-") and team.endswith("-v0003") and "/" not in team
    assert team == served_name("github.com/acme/api", "v0003")  # stable: a function of the key alone
    # keys that make the same safe text still differ (the hash), and match their adapter folder
    assert served_name("github.com/acme/api", "v1") != served_name("github.com:acme/api", "v1")
    assert segment_of("github.com/acme/api") == StoredRepository("github.com/acme/api", "api").folder_name
    assert len(segment_of("x/" * 200)) <= 67 and "/" not in segment_of("../../etc")


def test_team_serve_url_is_checked_in_one_line():
    assert server_url("http://gpu-box:8000/v1", "[team] serve") == "http://gpu-box:8000/v1"
    assert server_url(" https://gpu-box/v1/ ", "[team] serve") == "https://gpu-box/v1"
    assert server_url("http://gpu-box:8000", "[team] serve") == "http://gpu-box:8000/v1"
    for bad in ("gpu-box:8000", "ftp://gpu-box/v1", "http://gpu-box:port/v1", "http://gpu-box:/v1", "http:///v1",
                "http://gpu-box/v1?x=1"):
        with pytest.raises(UsageError) as err:
            server_url(bad, "[team] serve")
        assert str(err.value) == (f"[team] serve = {bad!r}: not the http(s) URL of a learnagent serve, "
                                  "e.g. http://gpu-box:8000/v1")


def test_the_base_among_a_servers_models():
    listed = ["qwen-7b", "learnagent-github.com_acme_api-3bc8cf-v0001", "learnagent-0123456789ab-v0002"]
    assert served_base(listed) == "qwen-7b"
    assert served_base(["a", "b"], prefer="b") == "b" and served_base(["a", "b"], prefer="c") == "a"
    assert served_base(["learnagent-x-v0001"]) is None


def test_a_laptop_never_uses_a_team_adapter_that_learnt_from_forgotten_episodes(git_repo, tmp_path, monkeypatch):
    """`forget` on the team store marks the team's adapters trained on those episodes tainted; the
    pointer to them lives on the GPU box, so a laptop reading the store's promoted row must not use
    it meanwhile (services.team.team_adapter: the base, with the reason)."""
    import os

    from learnagent.core.repository import Repository
    from learnagent.services import team
    from learnagent.store import team_rows
    from learnagent.store.episodes import Store

    team_db = tmp_path / "team.db"
    with open(os.environ["LEARNAGENT_CONFIG"], "w") as fh:
        fh.write(f'[team]\nurl = "{team_db}"\nserve = "http://127.0.0.1:9/v1"\n')
    with Store() as local:
        team.join(local, Repository.at(git_repo), "acme/api")
    with Store(team_db) as shared:
        team_rows.ensure_team_repo(shared, "acme/api")
        shared.add_adapter("acme/api", "v0001", path="/gpu/v0001", parent=None, method="opsd", base_model="b")
        shared.set_adapter_status("acme/api", "v0001", "promoted", "gate passed")
    used = team.team_adapter(Repository.at(git_repo))
    assert (used.key, used.version) == ("acme/api", "v0001")

    with Store(team_db) as shared:
        shared.mark_adapters_tainted("acme/api", ["v0001"])
    used = team.team_adapter(Repository.at(git_repo))
    assert used.version is None and "v0001 learnt from forgotten episodes" in used.note
