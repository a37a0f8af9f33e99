"""The ablation runner on a 2-worker Dask LocalCluster (digits, a subset), its statistics and its option checks."""

import json
import math

import pytest
from scipy import stats

from golden.errors import ConfigError, UnsupportedBitsError
from reports.app import ablation
from reports.app.cli import main
from reports.sweep_dask import dask_client


def test_t_interval_and_paired_tests():
    mean, half = ablation.t_interval([90.0, 91.0, 92.0])
    assert mean == 91.0 and half == pytest.approx(stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3))
    assert math.isnan(ablation.t_interval([90.0])[1])
    t_p, sign_p = ablation.paired_tests([0.5, 0.7, 0.6, 0.4, 0.9, 0.8])
    assert t_p < 0.01 and sign_p == pytest.approx(2 * 0.5 ** 6)
    assert ablation.paired_tests([0.0, 0.0, 0.0]) == (1.0, 1.0)
    assert ablation.paired_tests([-1.0, 1.0, 0.0])[1] == 1.0


def test_summary_pairs_each_seed_with_lsq():
    jobs = [{"scheme": "float", "bits": 32, "seed": s, "fake_quant": 0.9, "integer": None, "changed": None,
             "within_bound": None} for s in (0, 1)]
    jobs += [{"scheme": scheme, "bits": 4, "seed": s, "fake_quant": acc, "integer": acc - 0.01, "changed": 1,
              "within_bound": True} for scheme, accs in (("lsq", (0.80, 0.90)), ("post", (0.82, 0.91))) for s, acc in zip((0, 1), accs, strict=True)]
    summary, paired = ablation.summarize(jobs)
    by = {r["model"]: r for r in summary}
    assert by["lsq_w4"]["fake_quant_mean"] == pytest.approx(85.0) and by["float"]["integer_mean"] is None
    assert by["post_w4"]["paper_resnet20_w4"] == 92.7
    fake = next(r for r in paired if r["accuracy"] == "fake_quant")
    assert fake["model"] == "post_w4" and fake["vs"] == "lsq_w4" and fake["per_seed_pp"] == "+2.00 +1.00"
    assert fake["mean_diff_pp"] == pytest.approx(1.5)


@pytest.mark.slow
def test_two_worker_cluster_runs_the_matrix(tmp_path):
    out = tmp_path / "ablation"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    options = ablation.AblationOptions(out=out, runs=(("lsq", 4), ("post", 4)), seeds=(0, 1), float_epochs=4, qat_epochs=1,
                                       dataset="digits", test_images=100, qat_images=600, bound_images=50)
    with dask_client("local", workers=2, scratch=scratch) as client:  # processes: torch.fx tracing is not thread-safe
        assert len(client.scheduler_info()["workers"]) == 2
        result = ablation.run_ablation(options, client, progress=False)
    assert list(scratch.iterdir()) == []
    assert result.workers == 2 and len(result.jobs) == 2 + 2 * 2
    assert [(j["scheme"], j["seed"]) for j in result.jobs] == [("float", 0), ("float", 1), ("lsq", 0), ("lsq", 1), ("post", 0), ("post", 1)]
    for job in result.jobs[2:]:
        assert 0.7 < job["fake_quant"] <= 1 and 0.7 < job["integer"] <= 1 and job["within_bound"]
        assert abs(job["fake_quant"] - job["integer"]) * 100 <= job["changed"]  # 100 test images: 1 image = 1 %
    # the same seed gives the same float model on any worker: both float jobs differ, a rerun agrees
    assert result.jobs[0]["checkpoint"] != result.jobs[1]["checkpoint"]
    again = ablation.float_job(options, 0)
    assert again["fake_quant"] == result.jobs[0]["fake_quant"]
    summary = json.loads((out / "ablation_summary.json").read_text())["rows"]
    assert [r["model"] for r in summary] == ["float", "lsq_w4", "post_w4"]
    assert all(r["seeds"] == 2 for r in summary)
    text = (out / "ablation.md").read_text()
    assert "| post_w4 | lsq_w4 | fake_quant |" in text and "first 600 of the 1347 training images" in text
    assert (out / "checkpoints" / "post_w4_s1.pt").is_file()
    model = ablation.quantized_from_checkpoint(out / "checkpoints" / "post_w4_s1.pt", "post", 4, "digits")
    assert model.classifier.weight.shape == (10, 128)


@pytest.mark.parametrize("change, error, message", [
    ({"seeds": (0, 0)}, ConfigError, "distinct seeds"),
    ({"runs": (("pot", 9),)}, UnsupportedBitsError, "supports"),
    ({"dataset": "cifar"}, ConfigError, "data set 'cifar' does not exist"),
    ({"qat_images": 1}, ConfigError, "qat_images must be at least 2"),
])
def test_bad_options(tmp_path, change, error, message):
    options = ablation.AblationOptions(out=tmp_path / "out", **change)
    with pytest.raises(error, match=message):
        options.check()


def test_cli_bad_address_is_one_line(tmp_path, capsys):
    assert main(["ablation", "--out", str(tmp_path / "o"), "--dataset", "digits", "--dask", "localhost:1"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
