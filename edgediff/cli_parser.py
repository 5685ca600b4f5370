"""The argument parser of `edgediff <verb>`: flags, defaults and help; `cli.main` dispatches on the verb."""

from __future__ import annotations

import argparse

from edgediff.converters import base


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, instead of usage + message
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

DECODER_HELP = ("a separate AutoencoderTiny (TAESD) or AutoencoderKL folder that decodes instead of the "
                "text-to-image folder's vae/")


def _training_flags(p: argparse.ArgumentParser) -> None:
    """The flags train, prune and distill share: autocast dtype, threads, device, restart, quiet."""
    p.add_argument("--autocast", choices=["bf16", "fp32"], help="training autocast dtype (the config's "
                   "training.precision)")
    p.add_argument("--threads", type=int)
    p.add_argument("--device", default="cpu")
    p.add_argument("--restart", action="store_true", help="ignore existing checkpoints in --out")
    p.add_argument("--quiet", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="edgediff", description="edgediff: compact diffusion models for phones and laptops; one library "
                "call per verb, bad input prints one line and exits 2.")
    sub = p.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    i = sub.add_parser("info", help="shipped models: params, GFLOPs/step, sizes; installed runtimes")
    i.add_argument("--model", help="one model ('default', a shipped name or a directory)")
    i.add_argument("--json", action="store_true")

    t = sub.add_parser("train", help="train a denoiser from a model config (resumes from --out by default)")
    t.add_argument("--config", default="default", help="config.json, a model dir, or a shipped model name")
    t.add_argument("--out", required=True, help="output model directory (checkpoints live inside)")
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--data", help="mnist5k | mnist | path/to/image_folder")
    _training_flags(t)

    r = sub.add_parser("prune", help="structurally prune a model and recover it by distillation (resumable)")
    r.add_argument("--model", default="default", help="the unpruned teacher: 'default', a shipped name or a dir")
    r.add_argument("--out", required=True, help="output model directory (checkpoints live inside)")
    r.add_argument("--ratio", type=float, default=0.5, help="fraction of channels removed from every group")
    r.add_argument("--importance", default="magnitude", help="magnitude | taylor")
    r.add_argument("--round-to", type=int, default=8, help="keep widths multiples of this")
    r.add_argument("--steps", type=int, default=800, help="recovery fine-tuning steps (0: prune only)")
    r.add_argument("--lr", type=float, default=1e-3)
    r.add_argument("--distill-weight", type=float, default=1.0, help="weight of ||F - F_teacher||^2")
    r.add_argument("--batch-size", type=int)
    _training_flags(r)

    k = sub.add_parser("distill", help="consistency-distil a model into a 1-4 step, guidance-conditioned student")
    k.add_argument("--model", default="default", help="the EDM teacher: 'default', a shipped name or a dir")
    k.add_argument("--out", required=True, help="output model directory (checkpoints live inside)")
    k.add_argument("--steps", type=int, default=2000)
    k.add_argument("--batch-size", type=int, default=64)
    k.add_argument("--lr", type=float, default=1e-4)
    k.add_argument("--scales", type=int, default=18, help="N, the Karras discretisation the teacher steps along")
    k.add_argument("--w-min", type=float, default=1.0, help="guidance scales the student learns: [w_min, w_max]")
    k.add_argument("--w-max", type=float, default=3.0)
    k.add_argument("--solver", default="heun", help="teacher ODE step: heun | euler")
    k.add_argument("--target-ema", type=float, default=0.95,
                   help="EMA rate of the target network (cd) or of the saved weights (trajectory)")
    k.add_argument("--method", help="default cd; trajectory for a diffusers teacher. cd (consistency distillation) | "
                   "trajectory (regression onto "
                   "the teacher's own ODE endpoints, solved up front into OUT/trajectories)")
    k.add_argument("--trajectories", type=int, default=8000, help="trajectory method: teacher trajectories")
    k.add_argument("--substeps", type=int, default=2, help="trajectory method: solver steps per Karras interval")
    k.add_argument("--top-fraction", type=float, default=0.25, help="trajectory method: batch share at σ_max")
    k.add_argument("--init", help="start from this consistency student's weights instead of the teacher's")
    k.add_argument("--decay-steps", type=int, help="the lr falls linearly to 0 over the last N steps "
                   "(warm-up–stable–decay, Hägele et al. 2024); default: constant")
    _training_flags(k)

    u = sub.add_parser("tune-schedule", help="search a few-step model's intermediate σ by FID-proxy (Song et al. "
                       "2023); --write stores it as the model's recommended schedule")
    u.add_argument("--model", required=True, help="a model dir (or shipped name) whose sampler defaults to tune")
    u.add_argument("--steps", type=int, default=2)
    u.add_argument("--n", type=int, default=1000, help="samples per FID-proxy evaluation")
    u.add_argument("--seeds", type=int, default=1, help="search seeds averaged per candidate (FID-proxy of 1000 "
                   "samples moves ~0.3 between seeds)")
    u.add_argument("--grid", type=int, default=10, help="log-spaced candidates per intermediate σ")
    u.add_argument("--refine", type=int, default=4, help="finer candidates around the best coarse one (0: none)")
    u.add_argument("--write", action="store_true", help="write sampler_defaults.sigmas into the model's config.json")
    u.add_argument("--quiet", action="store_true")

    q = sub.add_parser("compress-report", help="int8/w8 variants of models beside fp32: FID-proxy, ms/step, MB")
    q.add_argument("--model", nargs="+", default=["default"], help="models to compare, the reference first")
    q.add_argument("--out", required=True, help="report dir (artifacts are built in OUT/artifacts)")
    q.add_argument("--fid", type=int, default=1000, help="samples per variant for FID-proxy (0: skip)")
    q.add_argument("--threads", type=int)
    q.add_argument("--no-naive", action="store_true", help="skip the random-input-calibrated int8 comparison")
    q.add_argument("--quiet", action="store_true")

    pl = sub.add_parser("pipeline", help="the whole job: convert for every runtime, sample, bench, OUT/README.md")
    pl.add_argument("--model", default="default", help="the base model: 'default', a shipped name or a dir")
    pl.add_argument("--task", choices=("image", "text-to-image"), help="image: the class-conditional pixel "
                    "pipeline; text-to-image: a prompt pipeline ('default' is the shipped openmoji-t2i). Default: "
                    "what --model is")
    pl.add_argument("--config", help="train a new base model from this config (config.json, model dir or shipped "
                    "name) instead of using --model")
    pl.add_argument("--train-steps", type=int, help="training steps for --config (default: the config's own)")
    pl.add_argument("--prune", type=float, default=0.0, metavar="RATIO",
                    help="prune this channel ratio from the base and recover it (0: use the shipped pruned variant "
                    "for comparison only)")
    pl.add_argument("--prune-steps", type=int, default=800, help="recovery fine-tuning steps after pruning")
    pl.add_argument("--distill-steps", type=int, default=0,
                    help="consistency-distil the (pruned) base for this many steps (0: the shipped student if any)")
    pl.add_argument("--targets", help="comma-separated backend-precision pairs, e.g. executorch-fp32,openvino-int8 "
                    "(default: each backend's pipeline precisions: executorch fp32/int8, openvino fp32/int8, "
                    "coreml fp16/palette6)")
    pl.add_argument("--n", type=int, default=100, help="images per sample grid")
    pl.add_argument("--threads", type=int, help="torch threads for the training stages")
    pl.add_argument("--student", default="auto", help="few-step student to deploy: auto (shipped <model>-cd), a "
                    "model dir, or none")
    pl.add_argument("--pruned", default="auto", help="pruned model to compare: auto (shipped <model>-p50), a dir, "
                    "or none")
    pl.add_argument("--out", required=True, help="output dir; re-running skips finished stages")
    pl.add_argument("--stages", help="comma-separated subset of train,prune,distill,convert,sample,bench,readme; "
                    "the run stops at the first unselected stage that has not run yet")
    pl.add_argument("--fid", type=int, default=0, help="FID-proxy samples per bench target (0: latency only)")
    pl.add_argument("--quiet", action="store_true")

    m = sub.add_parser("train-metric", help="train the classifier behind FID-proxy (digits; --data openmoji: emoji)")
    m.add_argument("--out", required=True)
    m.add_argument("--data", default="mnist5k", help="mnist5k (digits), openmoji (colour emoji subgroups) or a "
                   "digit dataset name")
    m.add_argument("--epochs", type=int, help="default: 8 for digits, 30 for emoji")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--quiet", action="store_true")

    s = sub.add_parser("sample", help="generate images with the shared sampler on a backend")
    s.add_argument("--model", default="default", help="'default', a shipped name, a model dir or an artifact dir")
    s.add_argument("--backend", default="auto", help="auto (eager for a model dir, the artifact's own backend)")
    s.add_argument("--device", help="runtime device, e.g. OpenVINO CPU/GPU/NPU/AUTO")
    s.add_argument("--threads", type=int)
    s.add_argument("--sampler", help="euler | heun | dpmpp_2m | consistency | lcm | tcd | euler_ancestral "
                   "(default: the model's)")
    s.add_argument("--gamma", type=float, help="the tcd sampler's γ in [0, 1]: 0 deterministic, 1 fresh noise per "
                   "step (default: the model's, else 0.3)")
    s.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--n", type=int, help="images to draw (default: 100, one per prompt for a text-to-image model)")
    s.add_argument("--prompt", help="text for a text-to-image pipeline (a diffusers Stable Diffusion folder)")
    s.add_argument("--negative-prompt", help="what classifier-free guidance steers away from (default: \"\")")
    s.add_argument("--decoder", help=DECODER_HELP)
    s.add_argument("--label", type=int, help="class to draw (default: every class in turn, one grid row each)")
    s.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the model's)")
    s.add_argument("--sigmas", help="comma-separated σ schedule replacing the sampler's (steps+1 values, decreasing, "
                   "ending in 0); by default a model's tuned schedule is used at its recommended steps")
    s.add_argument("--batch-size", type=int, default=250)
    s.add_argument("--out", required=True, help="FILE.png (grid) or FILE.npy (float32 array + FILE.labels.npy)")
    s.add_argument("--eval", action="store_true", help="print FID-proxy, KID and label accuracy of the samples")
    s.add_argument("--quiet", action="store_true")

    c = sub.add_parser("convert", help="convert a model for a runtime into a parity-gated artifact dir")
    c.add_argument("--model", default="default")
    c.add_argument("--backend", required=True, help=f"one of {', '.join(n for n in base.names() if n != 'eager')}")
    c.add_argument("--precision", default="fp32",
                   help="export precision: fp32, fp16, int8, ... (what the backend supports)")
    c.add_argument("--delegate", help="ExecuTorch delegate: xnnpack (default) or coreml (lowering only)")
    c.add_argument("--external-weights", action="store_true", default=None,
                   help="ExecuTorch: weights in model.ptd beside model.pte (automatic above 1 GiB of parameters)")
    c.add_argument("--attention", choices=("original", "split_einsum", "split_einsum_v2"),
                   help="Core ML: the UNet's attention implementation (Apple's names; split_einsum[_v2] for the "
                   "Neural Engine; default original)")
    c.add_argument("--chunks", type=int, choices=(1, 2), help="Core ML: split the program into this many "
                   "mlpackages (default: 2 for an iOS UNet over 1 GB of weights, as ml-stable-diffusion does)")
    c.add_argument("--decoder", help=DECODER_HELP)
    c.add_argument("--check-steps", type=int, help="a text-to-image pipeline: sampler steps of the images recorded "
                   "for parity, int8 calibration and the end-to-end check (default: its recommended steps)")
    c.add_argument("--batch", type=int, default=1, help="static batch size of the artifact (a text-to-image "
                   "pipeline: its UNet's; 2 runs both guidance branches in one call)")
    c.add_argument("--out", required=True)

    b = sub.add_parser("bench", help="latency report (load, ms/step, image ms, GFLOP/s) of models and artifacts")
    b.add_argument("targets", nargs="+", metavar="TARGET", help="model dirs ('default', ...) and artifact dirs")
    b.add_argument("--device", help="OpenVINO device (CPU/GPU/NPU/AUTO) or Core ML compute unit (CPU_ONLY, "
                   "CPU_AND_GPU, CPU_AND_NE, ALL) for those artifacts; the others run on the host CPU")
    b.add_argument("--threads", type=int)
    b.add_argument("--warmup", type=int, default=3)
    b.add_argument("--iters", type=int, default=20)
    b.add_argument("--fid", type=int, default=0, metavar="N",
                   help="also FID-proxy on N samples per target with its recommended sampler (fills pareto.png)")
    b.add_argument("--in-process", action="store_true",
                   help="measure every target in this process (faster; no per-target peak RSS)")
    b.add_argument("--out", required=True,
                   help="report dir: report.json, report.jsonl, report.md, latency.png, pareto.png")
    b.add_argument("--compare", help="an older report.json: print the change of ms/step p50 per row")
    b.add_argument("--quiet", action="store_true")

    sub.add_parser("devices", help="what each runtime can use on this machine")

    e = sub.add_parser("eval", help="FID-proxy, KID, real-vs-real floor, confidence of saved samples (digits; "
                       "colour emoji with prompt alignment and a memorisation check)")
    e.add_argument("--samples", required=True, help="FILE.npy written by `edgediff sample` ([N,1,32,32] digits or "
                   "[N,3,64,64] emoji)")
    e.add_argument("--labels", default="auto", help="FILE.npy of intended labels, 'auto' (sidecar) or 'none'")
    e.add_argument("--prompt", help="colour samples: the prompt every sample was drawn from (prompt alignment)")
    e.add_argument("--prompts", help="colour samples: FILE.txt with one prompt per sample, one per line")
    e.add_argument("--json", action="store_true")
    return p
