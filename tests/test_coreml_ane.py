"""Core ML for the Neural Engine: Apple's attention implementations (original / split_einsum / split_einsum_v2) on a
diffusers cross-attention UNet, and a program split into two chunks (coremltools' bisect_model). Prediction needs
macOS: here the eager numerics, the converted programs' ops, the chunks' wiring and the stored weights are checked."""

from __future__ import annotations

import pytest
import torch

from edgediff.errors import InputError

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def unet():
    """A cross-attention UNet at 32×32 latents: 1,024 query tokens, so split_einsum_v2 splits them in two."""
    import diffusers

    from edgediff.models.text_to_image import CondUNet

    torch.manual_seed(0)
    net = diffusers.UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8)
    return CondUNet(net).eval()


def _inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(1, 4, 32, 32, generator=g), torch.tensor([0.5]), torch.randn(1, 7, 32, generator=g)


@pytest.mark.parametrize("implementation", ["split_einsum", "split_einsum_v2"])
def test_neural_engine_attention_is_the_same_attention_and_is_undone_afterwards(unet, implementation):
    from edgediff.models.ane_attention import attention_implementation

    x, t, context = _inputs()
    with torch.no_grad():
        reference = unet(x, t, context)
        with attention_implementation(unet, implementation):
            out = unet(x, t, context)
            kinds = {type(m.processor).__name__ for m in unet.modules() if hasattr(m, "to_q")}
        restored = {type(m.processor).__name__ for m in unet.modules() if hasattr(m, "to_q")}
    assert kinds == {"SplitEinsumAttention"} and restored == {"MatmulAttention"}
    assert (out - reference).abs().max().item() < 1e-4 * reference.abs().max().item()


def _convert(net, out, **options):
    from edgediff.converters import coreml
    from edgediff.format.precond import VPPreconditioning

    x, t, context = _inputs()
    spec = {"x": (tuple(x.shape), "float32"), "t": ((1,), "float32"), "context": (tuple(context.shape), "float32")}
    net.parity_inputs = [(x.numpy(), t.numpy(), context.numpy())]
    return coreml.convert(net, spec, out, precond=VPPreconditioning.from_table([0.03, 1.0, 14.6]), **options)


def _program(path):
    import coremltools as ct

    return ct.models.MLModel(str(path), skip_model_load=True)


def _attention_products(*models) -> int:
    """How many matmul/einsum ops the programs hold (two per attention block as written; two per head and query
    block split)."""
    return sum(op.type in ("matmul", "einsum") for m in models for f in m.get_spec().mlProgram.functions.values()
               for block in f.block_specializations.values() for op in block.operations)


def test_split_einsum_v2_converts_with_per_head_einsums_and_chunks_wire_up(unet, tmp_path):
    pytest.importorskip("coremltools")
    from edgediff.converters import coreml

    art = _convert(unet, tmp_path / "ane", precision="w8", attention="split_einsum_v2", chunks=2)
    assert art.options["attention"] == "split_einsum_v2" and art.options["chunks"] == list(coreml.CHUNK_FILES)
    assert not (art.path / coreml.MODEL_FILE).exists()
    assert all(any(k.startswith(f + "/") for k in art.sha256) for f in coreml.CHUNK_FILES)  # both hash-checked
    first, second = (_program(art.path / f) for f in coreml.CHUNK_FILES)
    io = [([i.name for i in m.get_spec().description.input], [o.name for o in m.get_spec().description.output])
          for m in (first, second)]
    assert set(io[0][0]) <= set(art.spec) and set(io[1][0]) <= set(art.spec) | set(io[0][1])
    assert io[1][1] == [coreml.OUTPUT] and coreml.OUTPUT not in io[0][1]
    sizes = art.op_coverage["chunks"]
    assert min(sizes.values()) > 0.25 * sum(sizes.values())  # bisected by weight, not one empty half
    blocks = sum(m.processor is not None for m in unet.modules() if hasattr(m, "to_q"))
    assert _attention_products(first, second) >= 4 * 2 * blocks  # two per head and query block, not per block
    assert first.user_defined_metadata["edgediff.backend"] == '"coreml"'
    # every weight is found in one chunk or the other under its own name (the 1×1-conv projections too), close to
    # the torch weight it came from, and the large ones really int8 (at most 1/127 of their largest magnitude off)
    reference = unet.state_dict()
    stored = coreml.decompressed_state_dict(art, reference, strict=True)
    for name, w in reference.items():
        assert (stored[name] - w).abs().max() <= w.abs().max() / 127 + 1e-3, name
    assert sum(not torch.equal(stored[k], reference[k]) for k in reference if reference[k].numel() >= 4096) > 5


def test_an_unchunked_program_stays_one_model_file(unet, tmp_path):
    pytest.importorskip("coremltools")
    from edgediff.converters import coreml

    art = _convert(unet, tmp_path / "one", precision="fp16", attention="split_einsum")
    assert art.options["chunks"] == [] and art.model_file == coreml.MODEL_FILE  # 2 MB of weights: no split


@pytest.mark.parametrize("options, expected", [
    ({"attention": "flash"}, "unknown attention implementation 'flash'"),
    ({"chunks": 3}, "1 or 2 chunks"),
])
def test_bad_coreml_options_are_one_line_errors(unet, tmp_path, options, expected):
    pytest.importorskip("coremltools")
    with pytest.raises(InputError, match=expected) as e:
        _convert(unet, tmp_path / "bad", **options)
    assert "\n" not in str(e.value) and not (tmp_path / "bad").exists()


def test_neural_engine_attention_on_edgediff_own_unet_says_what_it_takes():
    from edgediff.models.ane_attention import attention_implementation
    from tests.conftest import random_unet

    net = random_unet()
    with pytest.raises(InputError, match="expected attention=original"):
        with attention_implementation(net, "split_einsum"):
            pass
