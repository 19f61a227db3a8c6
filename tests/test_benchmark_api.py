"""dfjax.benchmark: the README's example gives a run cell's numbers; bad detectors and
arguments are refused, with the problem named, before anything compiles."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dfjax
from dfjax.attacks.evaluate import AttackEvaluator
from dfjax.config import AttackSweep, DatasetSpec, MatrixConfig, ModelSpec, TrainSpec
from dfjax.models import build_model, make_logits_fn
from dfjax.runner import expand, run_matrix
from dfjax.store import Store
from dfjax.training import save_checkpoint
from dfjax.training.detectors import training_fingerprint

ROOT = Path(__file__).resolve().parents[1]
TINY = DatasetSpec(name="synthetic_faces", image_size=32, num_examples=400)  # the README's


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Datasets prepared once for this module's tests."""
    return tmp_path_factory.mktemp("benchmark_data")


@pytest.fixture(scope="module")
def tiny_detector():
    """(model, variables) of a randomly initialised cnn7_tiny for 32x32 images."""
    model = build_model(ModelSpec(name="cnn7_tiny"))
    return model, model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)


@pytest.fixture(scope="module")
def module_run(tmp_path_factory, data_dir, tiny_detector):
    """(result, store path) of the tiny detector, as a Flax module, named "mine", against
    FGSM and noise on 8 examples."""
    store = tmp_path_factory.mktemp("benchmark_store") / "b.sqlite"
    model, variables = tiny_detector
    result = dfjax.benchmark(model, variables, name="mine", dataset=TINY,
                             attacks=("fgsm", "noise"), n_examples=8, batch_size=8, store=store,
                             data_dir=data_dir)
    return result, store


def readme_example() -> str:
    """The first python block of the README's "Benchmark your own detector" section."""
    section = (ROOT / "README.md").read_text().split("## Benchmark your own detector", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def _metrics_of(store_path: Path, names) -> dict[str, dict[str, float]]:
    with Store(store_path) as store:
        return {r["attack"]: {k: r[k] for k in names} for r in store.rows()}


def test_readme_example_gives_the_numbers_of_the_equivalent_run_cell(tmp_path, data_dir,
                                                                     monkeypatch):
    """Run as typed (in an empty folder, so it writes runs/benchmark.sqlite there), the
    README example stores, per attack, every metric (sanity flags included) equal to the
    one `run_matrix` stores for the same cell of a zoo matrix -- same dataset, attacks,
    eps, n_eval, batch and seed -- whose detector, cnn7_tiny, is the example's trained
    one, placed in the checkpoint cache under the cell's detector id as a run leaves it.
    (The benchmark's rows add one metric, the module's parameter count.)"""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DFJAX_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DFJAX_CPU_DEVICES", "2")  # the tests' JAX has 2 CPU devices
    example: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), example)
    result = example["result"]

    config = MatrixConfig(
        name="readme", datasets=(example["data"],), models=(ModelSpec(name="cnn7_tiny"),),
        trainings=(TrainSpec(epochs=2, batch_size=32),),
        attacks=(AttackSweep(name="fgsm"),
                 AttackSweep(name="pgd", options={"num_steps": 3, "rand_init": False})),
        eps_values=(8 / 255,), n_eval=64, eval_batch_size=32)
    checkpoints = tmp_path / "checkpoints"
    cell = expand(config)[0]  # the user's weights, as if trained by the current code
    save_checkpoint(checkpoints, cell.detector_id, example["variables"],
                    {"history": [], "train_seconds": 0.0,
                     "fingerprint": training_fingerprint(cell)})
    with Store(tmp_path / "run.sqlite") as store:
        summary = run_matrix(config, store, data_dir=data_dir, checkpoint_dir=checkpoints,
                             progress=False, log=lambda _: None)
    assert summary.done == 2 and summary.failed == 0

    names = sorted(set(next(iter(result.metrics.values()))) - {"parameters"})
    ran = _metrics_of(tmp_path / "run.sqlite", names)
    benchmarked = _metrics_of(tmp_path / "runs" / "benchmark.sqlite", names)
    assert set(ran) == set(benchmarked) == set(result.robust_accuracy)
    np.testing.assert_equal(benchmarked, ran)
    with Store(tmp_path / "runs" / "benchmark.sqlite") as store:
        rows = store.rows()
    assert {(r["model"], r["training"]) for r in rows} == {("my-cnn", "user")}


def test_rows_carry_the_name_and_a_second_call_replaces_them_with_equal_numbers(
        data_dir, tiny_detector, module_run):
    """Each attack's row is stored under the user's name with training `user`, the
    detector's form and its parameter count; the same call again leaves one row per attack
    with the same numbers; the worst case is at most every attack's robust accuracy, and equal to
    the fraction correct clean and after both attacks."""
    first, store_path = module_run
    model, variables = tiny_detector
    second = dfjax.benchmark(model, variables, name="mine", dataset=TINY,
                             attacks=("fgsm", "noise"), n_examples=8, batch_size=8,
                             store=store_path, data_dir=data_dir)
    np.testing.assert_equal(second.metrics, first.metrics)
    with Store(store_path) as store:
        rows = store.rows()
        examples = [store.examples(r["cell_id"]) for r in rows]
    assert sorted(r["attack"] for r in rows) == ["fgsm", "noise"]
    assert {(r["model"], r["training"]) for r in rows} == {("mine", "user")}
    assert all('"form": "flax_module"' in r["extra_json"] for r in rows)
    model_parameters = sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))
    assert all(r["parameters"] == model_parameters for r in rows)
    correct = [(e["p_fake_clean"] > 0.5) == (e["label"] == 1) for e in examples[:1]]
    correct += [(e["p_fake_adv"] > 0.5) == (e["label"] == 1) for e in examples]
    assert first.worst_case_robust_accuracy == np.mean(np.logical_and.reduce(correct))
    assert first.worst_case_robust_accuracy <= min(first.robust_accuracy.values())
    assert "sanity_zero_gradients" in first.sanity["fgsm"]


def test_a_logits_function_with_one_logit_as_b_gives_the_modules_predictions(
        tmp_path, data_dir, tiny_detector, module_run):
    """A plain logits function returning one fake logit [b] (the module's logit
    difference) is scored with num_logits 1 and, the prediction being the same
    function of the input, the module's clean accuracy."""
    as_module, _ = module_run
    logits = make_logits_fn(*tiny_detector)
    as_function = dfjax.benchmark(lambda x: logits(x)[:, 1] - logits(x)[:, 0],
                                  name="function", dataset=TINY, attacks="fgsm", n_examples=8,
                                  batch_size=8, store=tmp_path / "b.sqlite", data_dir=data_dir)
    assert as_function.cells["fgsm"].model.num_logits == 1
    assert as_function.clean_accuracy == as_module.clean_accuracy


@pytest.fixture()
def no_compiling(monkeypatch):
    """Any attack compilation fails the test."""

    def compile_attack(*args, **kwargs):
        raise AssertionError("an attack was compiled")

    monkeypatch.setattr(AttackEvaluator, "get", compile_attack)


@pytest.mark.parametrize("detector, message", [
    (lambda x: jnp.zeros((x.shape[0], 3)), r"got shape \[8, 3\]"),
    (lambda x: jnp.zeros((1, 2)), r"for a batch of 8 images \[8, 32, 32, 3\]; got shape \[1, 2\]"),
    (lambda x: jnp.zeros((x.shape[0], 2), jnp.int32), "got dtype int32"),
    (lambda x: x.reshape(x.shape[0], 64, 64, 3)[..., :2], r"fails on a batch of the dataset's "
     r"images, float32 \[8, 32, 32, 3\] in \[0, 1\]"),
])
def test_a_detector_without_logits_is_refused_before_compiling(tmp_path, data_dir, detector,
                                                               message, no_compiling):
    """Wrong logits shape, integer output, or a failure on the dataset's image shape:
    ValueError naming the detector and what it returned; no attack compiled, no row."""
    with pytest.raises(ValueError, match=r"detector 'bad' .*" + message):
        dfjax.benchmark(detector, name="bad", dataset=TINY, attacks="fgsm", n_examples=8,
                        batch_size=8, store=tmp_path / "b.sqlite", data_dir=data_dir)
    assert not (tmp_path / "b.sqlite").exists()


def test_bad_arguments_are_listed_together_before_data_loads(tmp_path, tiny_detector,
                                                             no_compiling):
    """An unknown attack, a zoo model's name, a bad dataset option and n_examples 0 are
    all named in one ValueError, raised before the (missing) data directory is read."""
    model, variables = tiny_detector
    with pytest.raises(ValueError) as error:
        dfjax.benchmark(model, variables, name="cnn7", attacks=["fgsm", "pgdd"],
                        dataset=DatasetSpec(name="synthetic_faces", options={"colour": 1}),
                        n_examples=0, data_dir=tmp_path / "missing", store=tmp_path / "b.sqlite")
    text = str(error.value)
    for part in ("'pgdd'", "'cnn7' is a dfjax zoo model", "colour", "n_examples"):
        assert part in text
    assert not (tmp_path / "missing").exists() and not (tmp_path / "b.sqlite").exists()


def test_a_module_needs_its_variables_and_a_detector_must_be_callable(tiny_detector):
    model, variables = tiny_detector
    with pytest.raises(ValueError, match="pass its variables too"):
        dfjax.benchmark(model, name="x")
    with pytest.raises(ValueError, match="`variables` goes with a Flax module only"):
        dfjax.benchmark(make_logits_fn(model, variables), variables, name="x")
    with pytest.raises(TypeError, match="must be a logits function"):
        dfjax.benchmark("model.msgpack", name="x")


def test_your_own_arrays_give_the_numbers_of_the_same_examples_as_a_dataset(
        tmp_path, data_dir, tiny_detector, module_run):
    """dataset=(images, labels): the 8 examples the module run evaluated, passed as float
    arrays in [0, 1], give its FGSM metrics exactly (FGSM draws nothing at random), under a
    `user_arrays` dataset named by content hash."""
    from dfjax.data import load_dataset
    from dfjax.data.subsets import evaluation_subset

    first, _ = module_run
    test = evaluation_subset(load_dataset(TINY, data_dir=data_dir).test, 8, 0)
    model, variables = tiny_detector
    result = dfjax.benchmark(model, variables, name="mine", attacks="fgsm", n_examples=8,
                             batch_size=8, dataset=(test.images / 255.0, test.labels),
                             store=tmp_path / "b.sqlite")
    assert result.cells["fgsm"].dataset.label().startswith("user_arrays[sha256=")
    for key in ("clean_accuracy", "robust_accuracy", "adv_true_class_probability_mean"):
        assert result.metrics["fgsm"][key] == first.metrics["fgsm"][key]


@pytest.mark.parametrize("images, message", [
    (np.full((4, 32, 32, 3), 200.0), r"must lie in \[0, 1\].*\[200, 200\].*divide 0-255"),
    (np.full((4, 32, 32, 3), -0.5), r"must lie in \[0, 1\].*\[-0.5, -0.5\]"),
    (np.full((4, 32, 32, 3), np.nan), r"must lie in \[0, 1\]"),
    (np.zeros((4, 32, 32, 3), np.int64), "uint8 or float"),
    (np.zeros((4, 32, 32)), r"\[n >= 1, h, w, c\]"),
])
def test_arrays_outside_0_1_are_refused_before_compiling(tmp_path, tiny_detector, images,
                                                         message, no_compiling):
    """Pixels in 0-255, normalised inputs, NaN, integer or 3-d arrays: a ValueError saying
    what is wrong before anything compiles, and no store written."""
    model, variables = tiny_detector
    with pytest.raises(ValueError, match=message):
        dfjax.benchmark(model, variables, name="mine", attacks="fgsm",
                        dataset=(images, np.array([0, 1, 0, 1])), store=tmp_path / "b.sqlite")
    with pytest.raises(ValueError, match="0 \\(real\\) or 1 \\(fake\\)"):
        dfjax.benchmark(model, variables, name="mine", attacks="fgsm",
                        dataset=(np.zeros((4, 32, 32, 3)), np.array([0, 1, 2, 1])),
                        store=tmp_path / "b.sqlite")
    assert not (tmp_path / "b.sqlite").exists()
