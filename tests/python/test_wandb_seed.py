"""The seed's own script, through `tidelog.wandb`, then `tidelog sync` to a real server."""

import textwrap

from conftest import cli, history, python, states

SEED = textwrap.dedent("""
    from tidelog import wandb

    wandb.init(mode="offline", project="seed-demo", config={"lr": 0.001, "epochs": 10})
    for i in range(10):
        wandb.log({"metric": i, "loss": 10 - i})
    wandb.finish()
""")


def test_the_seed_script_runs_and_tidelog_sync_uploads_every_row(tmp_path, server):
    p = python(SEED, cwd=tmp_path)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    (run_id, state), = states(tmp_path / "tidelog").items()
    assert state == "finished"

    synced = cli("sync", env=server.env(), cwd=tmp_path)
    assert "synced" in synced.stdout
    run = server.json(f"/api/v1/runs/{run_id}")
    assert run["project"] == "seed-demo"
    assert run["state"] == "finished"
    assert run["config"]["lr"] == 0.001 and run["config"]["epochs"] == 10
    rows = history(server, run_id)
    assert [(r["_step"], r["metric"], r["loss"]) for r in rows] == [(i, i, 10 - i) for i in range(10)]
    system = server.json(f"/api/v1/runs/{run_id}/system")["rows"]
    assert system and any(k.startswith("system.") or "cpu" in k for k in system[0]), system[:1]
    # A second sync sends nothing new: no duplicated rows.
    cli("sync", "--include-synced", env=server.env(), cwd=tmp_path)
    assert len(history(server, run_id)) == 10


def test_wandb_names_config_summary_and_save(tmp_path, server, monkeypatch):
    from tidelog import wandb

    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.bin").write_bytes(b"\x00weights\xff")
    run = wandb.init(mode="offline", project="names", config={"batch": 32})
    wandb.config.update({"lr": 0.5})
    wandb.config["dropout"] = 0.1
    assert wandb.config["lr"] == 0.5 and wandb.config.batch == 32 and wandb.run is run
    wandb.log({"acc": 0.5})
    wandb.log({"lr_now": 0.25}, commit=False)
    wandb.log({"acc": 0.75})
    wandb.summary["best_acc"] = 0.9
    wandb.save("model.bin")
    wandb.log({"table": wandb.Table(columns=["a", "b"], data=[[1, "x"], [2, "y"]]),
               "hist": wandb.Histogram([1.0, 2.0, 2.5, 9.0], num_bins=4),
               "chart": wandb.plot.line(wandb.Table(columns=["x", "y"], data=[[0, 1], [1, 3]]), "x", "y", title="t")})
    wandb.finish()

    for r in __import__("tidelog").sync(dir=tmp_path, server=server.url, api_key=server.key):
        assert r["state"] == "finished", r
    got = server.json(f"/api/v1/runs/{run.id}")
    assert got["config"] == {"batch": 32, "lr": 0.5, "dropout": 0.1}
    assert got["summary"]["best_acc"] == 0.9
    rows = history(server, run.id)
    assert rows[0]["acc"] == 0.5 and rows[1]["acc"] == 0.75 and rows[1]["lr_now"] == 0.25
    assert rows[2]["table"] == {"_type": "table", "columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}
    assert rows[2]["hist"]["_type"] == "histogram" and sum(rows[2]["hist"]["counts"]) == 4
    assert rows[2]["chart"]["spec"]["mark"] == "line" and rows[2]["chart"]["data"]["values"][1] == {"x": 1, "y": 3}
    assert server.get(f"/api/v1/runs/{run.id}/files/model.bin") == b"\x00weights\xff"
