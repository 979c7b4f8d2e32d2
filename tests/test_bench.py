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
