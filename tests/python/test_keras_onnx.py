"""Keras import/export and ONNX export (issue 16, docs/interop.md), against Keras and ONNX Runtime themselves.

The Keras models are built like the paper's authors' Keras code (get_UNet3D, get_UNet2D, get_ResNet and
get_CV_UNet in their src/src.py: the same layer classes, order and arguments, including the crop, the two
ZeroPadding3D layers and the 'valid' head convolution), generalised in the same way as nfmimo's architectures
and tests/fixtures/make_torch_fixtures.py (crop n mod 8 voxels; narrow widths to keep the test small). Every
weight is random, and so are the batch-norm statistics (non-trivial moving mean and variance).

nfmimo's own output comes from build/nfmimo_network_forward (the CPU backend, inference mode).
Tolerance 1e-5 relative to the largest output value: both sides compute in float32 (the networks agree with a
float64 PyTorch reference to about 5e-6, docs/networks.md).
"""
import os
import subprocess
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.keras import layers  # noqa: E402

BINARY = os.environ.get("NFMIMO_BINARY", "build/nfmimo")
FORWARD = os.path.join(os.environ.get("NFMIMO_BUILD_DIR", "build"), "nfmimo_network_forward")
GRID = (17, 18, 25)  # crop 1, 2, 1 voxels (as the PyTorch fixtures)
GRID_OPTION = "-0.15:0.15:17,-0.15:0.15:18,0.35:0.65:25"
TOLERANCE = 1e-5

tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(1)


# ---------------------------------------------------------------------------------------------------------
# The authors' networks, generalised (width, grid).

def unet(grid, channels, width, kernels_3d, extra=None, filters_delta=None, epsilon=1e-3):
    """get_UNet3D / get_UNet2D / get_CV_UNet. `extra` inserts a layer after the first block (bad-input tests);
    `filters_delta` adds 1 filter to one convolution by index (bad-input tests)."""
    k3 = (3, 3, 3) if kernels_3d else (3, 3, 1)
    up = (2, 2, 2) if kernels_3d else (2, 2, 1)
    crop = tuple(n % 8 for n in grid)
    convs = [0]

    def conv(c, x):
        i = convs[0]
        convs[0] += 1
        return layers.Conv3D(c + (1 if filters_delta == i else 0), k3, padding="same")(x)

    def block(c, x):
        x = conv(c, x)
        x = layers.BatchNormalization(epsilon=epsilon)(x)
        return layers.Activation("relu")(x)

    inp = layers.Input(shape=grid + (channels,))
    s = layers.Cropping3D(cropping=tuple((c, 0) for c in crop))(inp)
    c1 = block(width, block(width, s))
    if extra is not None:
        c1 = extra(c1)
    p1 = layers.MaxPool3D((2, 2, 2))(c1)
    c2 = block(2 * width, block(2 * width, p1))
    p2 = layers.MaxPool3D((2, 2, 2))(c2)
    c3 = block(4 * width, block(4 * width, p2))
    p3 = layers.MaxPool3D((2, 2, 2))(c3)
    u7 = layers.Conv3DTranspose(4 * width, up, strides=(2, 2, 2), padding="same")(p3)
    u7 = layers.concatenate([u7, c3])
    c7 = block(4 * width, block(4 * width, u7))
    u8 = layers.Conv3DTranspose(2 * width, up, strides=(2, 2, 2), padding="same")(c7)
    u8 = layers.concatenate([u8, c2])
    c8 = block(2 * width, block(2 * width, u8))
    u9 = layers.Conv3DTranspose(width, up, strides=(2, 2, 2), padding="same")(c8)
    u9 = layers.concatenate([u9, c1])
    c9 = block(width, block(width, u9))
    c10 = layers.ZeroPadding3D(padding=tuple((c, 0) for c in crop))(c9)
    c10 = layers.ZeroPadding3D(padding=((1, 1), (1, 1), (1, 1) if kernels_3d else (0, 0)))(c10)
    c10 = layers.Conv3D(2 * width, k3, padding="valid")(c10)
    c10 = layers.BatchNormalization(epsilon=epsilon)(c10)
    c10 = layers.Activation("relu")(c10)
    outputs = layers.Conv3D(1, (1, 1, 1), activation="sigmoid")(c10)
    return tf.keras.Model(inp, outputs)


def resnet(grid, width, blocks=8):
    """get_ResNet: Conv + ReLU, `blocks` x [Conv + BN + ReLU], Conv to 1, plus the input."""
    inp = layers.Input(grid + (1,))
    c1 = layers.Activation("relu")(layers.Conv3D(width, (3, 3, 3), padding="same")(inp))
    for _ in range(blocks):
        c1 = layers.Conv3D(width, (3, 3, 3), padding="same")(c1)
        c1 = layers.BatchNormalization()(c1)
        c1 = layers.Activation("relu")(c1)
    inter = layers.Conv3D(1, (3, 3, 3), padding="same")(c1)
    return tf.keras.Model(inp, layers.add([inter, inp]))


def randomise(model, seed):
    """Random kernels (He scale), biases, gammas, betas and moving statistics."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            c = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c), rng.normal(0, 0.2, c),
                               rng.uniform(0.5, 1.5, c)])
        elif isinstance(layer, (layers.Conv3D, layers.Conv3DTranspose)):
            k, b = layer.get_weights()
            fan_in = np.prod(k.shape[:3]) * (k.shape[3] if isinstance(layer, layers.Conv3D) else k.shape[4])
            layer.set_weights([rng.normal(0, np.sqrt(2.0 / fan_in), k.shape), rng.normal(0, 0.1, b.shape)])
    return model


ARCHS = {
    "unet3d": dict(build=lambda **kw: unet(GRID, 1, 8, True, **kw), channels=1),
    "unet2d": dict(build=lambda **kw: unet(GRID, 1, 8, False, **kw), channels=1),
    "resnet": dict(build=lambda **kw: resnet(GRID, 8, **kw), channels=1),
    # Another epsilon than Keras's default: it must travel with the weights.
    "cv-unet3d": dict(build=lambda **kw: unet(GRID, 2, 8, True, epsilon=1e-5, **kw), channels=2),
}


# ---------------------------------------------------------------------------------------------------------
# Helpers.

def run(*args, expect=0):
    r = subprocess.run([BINARY, "--threads", "2", *args], capture_output=True, text=True)
    assert r.returncode == expect, f"exit {r.returncode} (wanted {expect}): {r.stderr}{r.stdout}"
    return r


def import_keras(src, arch, out, expect=0):
    return run("import", "keras", src, "--arch", arch, "--system", "paper", "--freqs", "3", "--grid", GRID_OPTION,
               "--out", out, expect=expect)


def nfmimo_forward(weights, x_channels_last, folder):
    """nfmimo's output for Keras-layout inputs [n, x, y, z, c], returned in the same layout."""
    src, dst = os.path.join(folder, "in.h5"), os.path.join(folder, "out.h5")
    with h5py.File(src, "w") as f:
        f["input"] = np.ascontiguousarray(np.moveaxis(x_channels_last, -1, 1)).astype(np.float32)
    subprocess.run([FORWARD, weights, src, dst], check=True)
    with h5py.File(dst) as f:
        return np.moveaxis(f["output"][()], 1, -1)


def inputs(channels, n, seed):
    x = np.random.default_rng(seed).uniform(0, 1, (n,) + GRID + (channels,)).astype(np.float32)
    return x * 2 - 1 if channels == 2 else x  # real and imaginary parts for the CV U-Net


def relative(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory(prefix="nfmimo_keras_") as d:
        yield d


@pytest.fixture(scope="module")
def keras_models(folder):
    """arch -> (Keras model, path of its model.save(...) .h5 file)."""
    out = {}
    for i, (arch, spec) in enumerate(ARCHS.items()):
        tf.keras.backend.clear_session()  # default layer names (conv3d, conv3d_1, ...) per model, as in a fresh run
        model = randomise(spec["build"](), 1000 + i)
        path = os.path.join(folder, f"keras_{arch}.h5")
        model.save(path)
        out[arch] = (model, path)
    return out


# ---------------------------------------------------------------------------------------------------------
# Import: the output equals Keras's.

@pytest.mark.parametrize("arch", list(ARCHS))
def test_import_matches_keras(arch, keras_models, folder):
    model, path = keras_models[arch]
    weights = os.path.join(folder, f"imported_{arch}.h5")
    import_keras(path, arch, weights)
    x = inputs(ARCHS[arch]["channels"], 2, 7)
    want = model(x, training=False).numpy()
    got = nfmimo_forward(weights, x, folder)
    assert got.shape == want.shape
    err = relative(got, want)
    print(f"{arch}: nfmimo vs Keras max error / max |output| = {err:.2e}")
    assert err <= TOLERANCE
    with h5py.File(weights) as f:  # provenance and the hyperparameters read from model_config
        record = f.attrs["training"]
        assert "imported_from" in record and "keras2-hdf5" in record and os.path.basename(path) in record
        bn = [l for l in model.layers if isinstance(l, layers.BatchNormalization)]
        assert f.attrs["bn_epsilon"] == pytest.approx(bn[0].epsilon)
        assert f.attrs["width"] == 8


def test_import_keras3_weights_format(keras_models, folder):
    """Keras's weights-only format (.weights.h5: /layers/<name>/vars/<i> or its 2.15 spelling), no topology."""
    model, _ = keras_models["unet3d"]
    path = os.path.join(folder, "unet3d.weights.h5")
    model.save_weights(path)
    weights = os.path.join(folder, "imported_weights_only.h5")
    import_keras(path, "unet3d", weights)
    x = inputs(1, 1, 8)
    assert relative(nfmimo_forward(weights, x, folder), model(x, training=False).numpy()) <= TOLERANCE


# ---------------------------------------------------------------------------------------------------------
# Export to Keras: a Keras -> nfmimo -> Keras round trip gives identical weights.

@pytest.mark.parametrize("arch", list(ARCHS))
def test_keras_round_trip(arch, keras_models, folder):
    model, _ = keras_models[arch]
    weights = os.path.join(folder, f"imported_{arch}.h5")
    if not os.path.exists(weights):
        import_keras(keras_models[arch][1], arch, weights)
    exported = os.path.join(folder, f"exported_{arch}.h5")
    run("export", weights, "--format", "keras", "--out", exported, "--force")
    back = tf.keras.models.load_model(exported, compile=False)
    a, b = model.get_weights(), back.get_weights()
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b)):
        assert u.shape == v.shape and np.array_equal(u, v), f"weight {i} differs"
    bn = [l for l in back.layers if isinstance(l, layers.BatchNormalization)]
    assert bn[0].epsilon == pytest.approx([l for l in model.layers if isinstance(l, layers.BatchNormalization)][0].epsilon)
    x = inputs(ARCHS[arch]["channels"], 1, 9)
    assert relative(back(x, training=False).numpy(), model(x, training=False).numpy()) <= 1e-6


# ---------------------------------------------------------------------------------------------------------
# Export to ONNX: ONNX Runtime equals nfmimo.

@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("batch_norm", ["fold", "keep"])
def test_onnx_matches_nfmimo(arch, batch_norm, keras_models, folder):
    weights = os.path.join(folder, f"imported_{arch}.h5")
    if not os.path.exists(weights):
        import_keras(keras_models[arch][1], arch, weights)
    onnx_path = os.path.join(folder, f"{arch}_{batch_norm}.onnx")
    run("export", weights, "--format", "onnx", "--batch-norm", batch_norm, "--out", onnx_path, "--force")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    c = ARCHS[arch]["channels"]
    assert inp.name == "input" and out.name == "output"
    assert inp.shape == ["batch", c, *GRID] and out.shape == ["batch", 1, *GRID]
    for n in (1, 3):  # the batch dimension is free
        x = inputs(c, n, 10 + n)
        want = nfmimo_forward(weights, x, folder)
        got = session.run(["output"], {"input": np.ascontiguousarray(np.moveaxis(x, -1, 1))})[0]
        err = relative(np.moveaxis(got, 1, -1), want)
        print(f"{arch} ({batch_norm}, batch {n}): ONNX Runtime vs nfmimo {err:.2e}")
        assert err <= TOLERANCE


# ---------------------------------------------------------------------------------------------------------
# Bad inputs: exit 2, one message naming the file and the layer, no output file.

def refused(src, arch, folder, *needles):
    out = os.path.join(folder, "refused.h5")
    r = import_keras(src, arch, out, expect=2)
    assert not os.path.exists(out)
    message = r.stderr
    assert message.count("\n") == 1 and src in message, message
    for n in needles:
        assert n in message, message
    return message


def test_refuses_another_architecture(keras_models, folder):
    # The 2D-kernel U-Net read as the 3D one: the first convolution's kernel differs.
    refused(keras_models["unet2d"][1], "unet3d", folder, "layer 'conv3d'", "3x3x1", "enc1.block1.conv")
    # A U-Net read as the ResNet: the ResNet has no crop.
    refused(keras_models["unet3d"][1], "resnet", folder, "layer 'cropping3d'")


def test_refuses_a_layer_off_by_one(folder):
    tf.keras.backend.clear_session()
    path = os.path.join(folder, "off_by_one.h5")
    randomise(unet(GRID, 1, 8, True, filters_delta=2), 5).save(path)  # enc2.block1.conv with 17 filters
    refused(path, "unet3d", folder, "layer 'conv3d_2'", "17 channels", "enc2.block1.conv")


def test_refuses_a_weight_array_off_by_one(keras_models, folder):
    # Topology right, one stored kernel one output channel short: the shape check names the layer and array.
    path = os.path.join(folder, "array_off_by_one.h5")
    with open(keras_models["unet3d"][1], "rb") as a, open(path, "wb") as b:
        b.write(a.read())
    with h5py.File(path, "a") as f:
        g = f["model_weights/conv3d_3/conv3d_3"]
        k = g["kernel:0"][()]
        del g["kernel:0"]
        g["kernel:0"] = k[..., :-1]
    refused(path, "unet3d", folder, "layer 'conv3d_3'", "kernel", "[3, 3, 3, 16, 15]", "[3, 3, 3, 16, 16]")


def test_refuses_an_unknown_layer_type(folder):
    tf.keras.backend.clear_session()
    path = os.path.join(folder, "dropout.h5")
    randomise(unet(GRID, 1, 8, True, extra=layers.Dropout(0.1)), 6).save(path)
    refused(path, "unet3d", folder, "layer 'dropout'", "Dropout")


def test_refuses_a_truncated_file(keras_models, folder):
    path = os.path.join(folder, "truncated.h5")
    with open(keras_models["unet3d"][1], "rb") as a, open(path, "wb") as b:
        data = a.read()
        b.write(data[: len(data) * 2 // 3])
    refused(path, "unet3d", folder)


def test_refuses_a_model_for_another_grid(keras_models, folder):
    out = os.path.join(folder, "grid.h5")
    r = run("import", "keras", keras_models["unet3d"][1], "--arch", "unet3d", "--grid", "paper", "--out", out,
            expect=2)
    assert "17 x 18 x 25" in r.stderr and "25 x 25 x 49" in r.stderr and not os.path.exists(out)


# ---------------------------------------------------------------------------------------------------------
# The whole pipeline as one ONNX graph equals `nfmimo reconstruct`.

def measurements(folder):
    """Two frames of the model's system (paper, K = 3) on the test grid: two scenes of point targets."""
    path = os.path.join(folder, "two_frames.h5")
    if os.path.exists(path):
        return path
    frames = []
    for i, points in enumerate(["0,0,0.5,1;0.05,-0.05,0.45,0.7", "-0.08,0.03,0.55,0.5;0.1,0.1,0.4,1"]):
        one = os.path.join(folder, f"scene{i}.h5")
        run("simulate", "--points", points, "--snr", "30", "--seed", str(i + 1), "--system", "paper", "--freqs", "3",
            "--grid", GRID_OPTION, "--out", one, "--force")
        with h5py.File(one) as f:
            y = f["measurements"][()]
            frames.append(y.reshape((-1,) + y.shape[-3:]))
    with h5py.File(os.path.join(folder, "scene0.h5")) as src, h5py.File(path, "w") as dst:
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        src.copy("system", dst)
        if "grid" in src:
            src.copy("grid", dst)
        dst["measurements"] = np.concatenate(frames).astype(np.complex64)
    return path


@pytest.mark.parametrize("arch,method", [("unet3d", "deep2s"), ("cv-unet3d", "cv-deep2s")])
def test_onnx_pipeline_matches_reconstruct(arch, method, keras_models, folder):
    weights = os.path.join(folder, f"imported_{arch}.h5")
    if not os.path.exists(weights):
        import_keras(keras_models[arch][1], arch, weights)
    scene = measurements(folder)
    volume = os.path.join(folder, f"volume_{method}.h5")
    run("reconstruct", scene, "--method", method, "--model", weights, "--mode", "exact", "--device", "cpu",
        "--out", volume, "--force")
    onnx_path = os.path.join(folder, f"{method}_pipeline.onnx")
    run("export", weights, "--format", "onnx", "--pipeline", "--out", onnx_path, "--force")
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.name == "measurements" and inp.shape == ["batch", 3, 12, 13, 2] and out.name == "output"
    with h5py.File(scene) as f:
        y = f["measurements"][()]
    with h5py.File(volume) as f:
        want = f["volumes"][()]
    x = np.stack([y.real, y.imag], axis=-1).astype(np.float32)
    got = session.run(["output"], {"measurements": x})[0][:, 0]
    err = relative(got, want)
    print(f"{method} pipeline: ONNX Runtime vs nfmimo reconstruct {err:.2e}")
    # The adjoint's float32 sums differ in order (a dense product against nfmimo's operator): 1e-6 relative on
    # the network input, which the networks pass on about unamplified.
    assert err <= TOLERANCE
