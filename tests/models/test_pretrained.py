"""Pretrained weights: a torchvision-named stand-in converts onto our ResNet exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

from dfjax.config import ModelSpec
from dfjax.models import build_model
from dfjax.models.pretrained import convert_torchvision_resnet, load_pretrained

STAGES, WIDTH = (1, 1, 1), 4  # resnet50_tiny


def fake_torchvision_resnet50(rng, stages=STAGES, width=WIDTH, classes=1000):
    """A state dict in torchvision's names and layouts ([out, in, kh, kw] convs, [out, in]
    fc), written from the torchvision source conventions, with random values."""
    sd = {}

    def conv(name, cout, cin, k):
        sd[f"{name}.weight"] = rng.normal(0, (2 / (cin * k * k)) ** 0.5, (cout, cin, k, k))

    def bn(name, c):
        sd[f"{name}.weight"] = rng.uniform(0.5, 1.5, c)
        sd[f"{name}.bias"] = rng.normal(0, 0.1, c)
        sd[f"{name}.running_mean"] = rng.normal(0, 0.1, c)
        sd[f"{name}.running_var"] = rng.uniform(0.5, 1.5, c)
        sd[f"{name}.num_batches_tracked"] = np.array(7)

    conv("conv1", width, 3, 7)
    bn("bn1", width)
    cin = width
    for i, blocks in enumerate(stages):
        planes = width * 2**i
        for j in range(blocks):
            p = f"layer{i + 1}.{j}"
            conv(f"{p}.conv1", planes, cin, 1)
            bn(f"{p}.bn1", planes)
            conv(f"{p}.conv2", planes, planes, 3)
            bn(f"{p}.bn2", planes)
            conv(f"{p}.conv3", planes * 4, planes, 1)
            bn(f"{p}.bn3", planes * 4)
            if j == 0:
                conv(f"{p}.downsample.0", planes * 4, cin, 1)
                bn(f"{p}.downsample.1", planes * 4)
            cin = planes * 4
    sd["fc.weight"] = rng.normal(0, 0.1, (classes, cin))
    sd["fc.bias"] = rng.normal(0, 0.1, classes)
    return {k: np.asarray(v, np.float32 if v.dtype.kind == "f" else v.dtype)
            for k, v in sd.items()}


def torch_reference_forward(sd, x_nhwc, stages=STAGES):
    """torchvision's ResNet-50 forward (v1.5 bottlenecks), written with torch.nn.functional."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    t = {k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()}

    def bn(x, n):
        return F.batch_norm(x, t[f"{n}.running_mean"], t[f"{n}.running_var"], t[f"{n}.weight"],
                            t[f"{n}.bias"], training=False, eps=1e-5)

    x = torch.from_numpy(np.asarray(x_nhwc)).permute(0, 3, 1, 2)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (x - mean) / std
    x = F.relu(bn(F.conv2d(x, t["conv1.weight"], stride=2, padding=3), "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for i, blocks in enumerate(stages):
        for j in range(blocks):
            p = f"layer{i + 1}.{j}"
            stride = 2 if i > 0 and j == 0 else 1
            out = F.relu(bn(F.conv2d(x, t[f"{p}.conv1.weight"]), f"{p}.bn1"))
            out = F.relu(bn(F.conv2d(out, t[f"{p}.conv2.weight"], stride=stride, padding=1),
                            f"{p}.bn2"))
            out = bn(F.conv2d(out, t[f"{p}.conv3.weight"]), f"{p}.bn3")
            if f"{p}.downsample.0.weight" in t:
                x = bn(F.conv2d(x, t[f"{p}.downsample.0.weight"], stride=stride),
                       f"{p}.downsample.1")
            x = F.relu(out + x)
    x = x.mean(dim=(2, 3))
    return (x @ t["fc.weight"].T + t["fc.bias"]).numpy()


@pytest.fixture()
def state_dict_npz(tmp_path):
    sd = fake_torchvision_resnet50(np.random.default_rng(0))
    path = tmp_path / "resnet50_tiny_imagenet.npz"
    np.savez(path, **sd)
    return sd, path


def test_every_parameter_lands_with_its_value(state_dict_npz):
    sd, path = state_dict_npz
    model = build_model(ModelSpec(name="resnet50_tiny"))
    target = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    loaded = load_pretrained(path, target)
    np.testing.assert_array_equal(loaded["params"]["conv1"]["kernel"],
                                  sd["conv1.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(loaded["params"]["layer2_0"]["downsample_conv"]["kernel"],
                                  sd["layer2.0.downsample.0.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(loaded["batch_stats"]["layer3_0"]["bn2"]["var"],
                                  sd["layer3.0.bn2.running_var"])
    np.testing.assert_array_equal(loaded["params"]["layer1_0"]["bn3"]["scale"],
                                  sd["layer1.0.bn3.weight"])
    # every body leaf came from the file; the 2-logit head stayed as initialised
    converted = convert_torchvision_resnet(sd)
    for coll in ("params", "batch_stats"):
        flat_t = jax.tree_util.tree_flatten_with_path(target[coll])[0]
        flat_c = dict(jax.tree_util.tree_flatten_with_path(converted[coll])[0])
        for path_, value in flat_t:
            if path_[0].key == "fc":
                continue
            assert path_ in flat_c, path_
            assert flat_c[path_].shape == value.shape
    np.testing.assert_array_equal(loaded["params"]["fc"]["kernel"],
                                  target["params"]["fc"]["kernel"])
    assert loaded["params"]["fc"]["kernel"].shape == (64, 2)  # 4 * 4 * 2**2 features


def test_forward_matches_torch_reference(state_dict_npz):
    sd, path = state_dict_npz
    model = build_model(ModelSpec(name="resnet50_tiny", num_logits=2))
    target = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    loaded = load_pretrained(path, target)
    head_w, head_b = sd["fc.weight"][:2], sd["fc.bias"][:2]  # compare the first 2 logits
    loaded["params"]["fc"] = {"kernel": jnp.asarray(head_w.T), "bias": jnp.asarray(head_b)}
    x = np.random.default_rng(1).random((2, 32, 32, 3), dtype=np.float32)
    ours = np.asarray(model.apply(loaded, jnp.asarray(x), train=False))
    ref = torch_reference_forward({**sd, "fc.weight": head_w, "fc.bias": head_b}, x)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_msgpack_checkpoint_fine_tunes_with_new_head(tmp_path):
    x = jnp.zeros((1, 32, 32, 3))
    source_model = build_model(ModelSpec(name="cnn7_tiny", num_logits=2))
    source = source_model.init(jax.random.key(3), x, train=False)
    path = tmp_path / "detector.msgpack"
    path.write_bytes(serialization.to_bytes(source))
    target = build_model(ModelSpec(name="cnn7_tiny", num_logits=1)).init(jax.random.key(0), x)
    loaded = load_pretrained(path, target)
    np.testing.assert_array_equal(loaded["params"]["Conv_0"]["kernel"],
                                  source["params"]["Conv_0"]["kernel"])
    assert loaded["params"]["Dense_3"]["kernel"].shape == (8, 1)  # head: new, not loaded
    np.testing.assert_array_equal(loaded["params"]["Dense_3"]["kernel"],
                                  target["params"]["Dense_3"]["kernel"])


def test_weights_of_another_architecture_are_refused(state_dict_npz):
    _, path = state_dict_npz
    target = build_model(ModelSpec(name="cnn7_tiny")).init(jax.random.key(0),
                                                            jnp.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="wrong architecture"):
        load_pretrained(path, target)
