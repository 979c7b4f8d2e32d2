import pandas as pd

from gblend import bench


def test_bench_measures_every_trainer_and_round_trips(tmp_path):
    frame, path = bench.run_bench(
        datasets=["mfeat"], runs=[1, 2], epochs=1, results_dir=str(tmp_path)
    )
    assert list(frame.method.str.split(" ").str[1]) == [
        "loop",
        "Trainer",
        "BatchedTrainer",
        "BatchedTrainer",
    ]
    assert frame.ratio_to_reference.iloc[0] == 1.0
    assert (frame.samples_per_s > 0).all() and list(frame.runs) == [1, 1, 1, 2]
    assert path.parent == tmp_path / "bench"
    loaded = bench.load_bench(str(tmp_path))
    assert len(loaded) == len(frame) and loaded.device.notna().all()
    assert bench.load_bench(str(tmp_path / "none")).empty
    assert (loaded.gflops_per_s > 0).all() and (loaded.matmul_gflops > 0).all()


def test_flops_per_sample_counts_forward_and_backward():
    import torch

    from gblend import data as gdata
    from gblend.models import JOINT

    class Linear(torch.nn.Module):
        def __init__(self, dim: int, classes: int) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(dim, classes, bias=False)

        def forward(self, x):
            return {JOINT: self.fc(x["pix"])}

    dataset = gdata.load("mfeat", seed=0, max_samples=200).select(["pix"])
    dim, classes = dataset.x["pix"].shape[1], dataset.n_classes
    # forward 2*d*c per sample; backward needs only the weight gradient (inputs need none)
    assert bench.train_flops_per_sample(Linear(dim, classes), dataset, 16) == 4 * dim * classes


def test_targets_and_full_run_phases_read_the_files(tmp_path):
    import json

    folder = tmp_path / "bench"
    folder.mkdir()
    prov = {"device": "cuda", "device_name": "GPU", "torch_version": "2", "git_commit": "abc"}
    rows = [
        {"method": bench.BATCHED, "runs": 8, "ratio_to_reference": 30.0, "gflops_per_s": 9.0},
        {"method": bench.BATCHED, "runs": 32, "ratio_to_reference": 19.0, "gflops_per_s": 9.0},
        {"method": bench.BATCHED, "runs": 128, "ratio_to_reference": 21.0, "gflops_per_s": 9.0},
    ]
    rows = [r | {"dataset": "d"} for r in rows]
    prov["matmul_gflops"] = 10.0  # 90% of the ceiling counts on a CPU only
    phases = [
        {"name": "a", "seconds": 3.0, "returncode": 0, "limit_s": 9.0},
        {"name": "b", "seconds": 9.0, "returncode": None, "limit_s": 9.0},
        {"name": "c", "seconds": 0.0, "returncode": None, "limit_s": 1.0},
        {"name": "d", "seconds": 1.0, "returncode": 2, "limit_s": 9.0},
    ]
    payload = {"provenance": prov, "throughput": rows, "full_run": phases}
    (folder / "GPU-x.json").write_text(json.dumps(payload))
    targets = bench.throughput_targets(bench.load_bench(str(tmp_path)))
    assert list(targets.runs) == [32, 128]  # fewer than 32 runs is not what the target asks
    assert list(targets.met) == [False, True] and set(targets.target) == {20.0}
    # on a CPU, 40% of the matmul ceiling meets the target even below 5x the reference
    cpu_rows = [
        {"method": bench.BATCHED, "runs": 32, "ratio_to_reference": 1.5, "gflops_per_s": g}
        for g in (50.0, 30.0)
    ]
    cpu = {"device": "cpu", "device_name": "CPU", "torch_version": "2", "git_commit": "abc"}
    payload_cpu = {"provenance": cpu | {"matmul_gflops": 100.0}, "throughput": cpu_rows}
    (folder / "CPU-x.json").write_text(json.dumps(payload_cpu))
    on_cpu = bench.throughput_targets(bench.load_bench(str(tmp_path))).query("device == 'CPU'")
    assert list(on_cpu.met) == [True, False] and set(on_cpu.target) == {5.0}
    timings = pd.DataFrame(
        {
            "device": "cpu",
            "commit": "c",
            "scale": ["smoke", "smoke", "cpu"],
            "seconds": [400, 300, 10],
        }
    )
    totals = bench.notebook_totals(timings).set_index("scale")
    assert totals.seconds.to_dict() == {"cpu": 10, "smoke": 700}
    assert totals.met.to_dict() == {"cpu": True, "smoke": False}
    status = bench.full_run_phases(str(tmp_path)).set_index("name").status
    assert list(status) == ["ok", "stopped at its limit", "skipped", "failed (exit 2)"]
