"""`edgediff <verb>`: one library call per verb; bad input prints one line and exits 2."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import EdgediffError, InputError


def _info(a):
    from . import checkpoint, info

    names = [a.model] if a.model else checkpoint.list_shipped()
    rows = [info.describe(n) for n in names]
    print(json.dumps(rows, indent=2) if a.json else info.format_table(rows))


def _train(a):
    from . import checkpoint, distributed, train

    src = Path(a.config).parent if a.config.endswith(".json") else checkpoint.resolve(a.config)
    out = train.fit_model_config(checkpoint.read_config(src), Path(a.out), resume=not a.restart,
                                 progress=not a.quiet, device=a.device, steps=a.steps, batch_size=a.batch_size,
                                 lr=a.lr, precision=a.precision, threads=a.threads, seed=a.seed, data=a.data)
    if distributed.rank() == 0:  # under torchrun, one line from rank 0
        print(f"trained model written to {out}")


def _prune(a):
    from . import prune

    cfg = prune.PruneConfig(ratio=a.ratio, importance=a.importance, round_to=a.round_to)
    out = prune.recover(a.model, Path(a.out), prune_config=cfg, steps=a.steps, lr=a.lr,
                        distill_weight=a.distill_weight, resume=not a.restart, progress=not a.quiet, device=a.device,
                        batch_size=a.batch_size, threads=a.threads, precision=a.precision)
    print(f"pruned model written to {out}")


def _distill(a):
    from . import distill

    cfg = distill.DistillConfig(scales=a.scales, w_min=a.w_min, w_max=a.w_max, solver=a.solver, method=a.method,
                                trajectories=a.trajectories, substeps=a.substeps, top_fraction=a.top_fraction)
    out = distill.distill(a.model, Path(a.out), config=cfg, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                          target_ema=a.target_ema, init=a.init, resume=not a.restart, progress=not a.quiet,
                          device=a.device, threads=a.threads, precision=a.precision)
    print(f"consistency student written to {out}")


def _tune_schedule(a):
    from . import tune

    t = tune.tune_sigmas(a.model, steps=a.steps, n=a.n, grid=a.grid, refine=a.refine, seeds=a.seeds,
                         progress=not a.quiet)
    print(f"{t.sampler} × {t.steps}: formula σ {list(t.start)} FID-proxy {t.fid_start:.2f}; "
          f"tuned σ {list(t.best)} FID-proxy {t.fid_best:.2f} ({t.n} samples, report seed)")
    if a.write:
        print(f"written to {tune.write(a.model, t)}")


def _compress_report(a):
    from . import compression

    path = compression.report(a.model, Path(a.out), fid=a.fid, threads=a.threads, naive=not a.no_naive,
                              progress=not a.quiet)
    print(path.read_text(), end="")


def _pipeline(a):
    from . import pipeline

    recipe = pipeline.Recipe(config=a.config, train_steps=a.train_steps, prune=a.prune, prune_steps=a.prune_steps,
                             distill_steps=a.distill_steps, threads=a.threads)
    targets = a.targets.split(",") if a.targets else pipeline.TARGETS
    p = pipeline.plan(a.model, Path(a.out), student=None if a.student == "none" else a.student,
                      pruned=None if a.pruned == "none" else a.pruned, fid=a.fid, recipe=recipe, targets=targets,
                      n=a.n)
    stages = a.stages.split(",") if a.stages else pipeline.STAGES
    result = pipeline.run(p, stages=stages, progress=not a.quiet)
    print(f"done: {result}")


def _floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{flag} {text!r} must be comma-separated numbers, e.g. 80,0.8,0") from None


def _train_metric(a):
    from . import metrics

    result = metrics.fit_metric(Path(a.out), data=a.data, epochs=a.epochs, seed=a.seed, progress=not a.quiet)
    print(json.dumps(result, indent=2))


def _sample(a):
    from . import generate

    request = generate.Request(n=a.n, seed=a.seed, sampler=a.sampler, steps=a.steps, guidance=a.guidance,
                               label=a.label, batch_size=a.batch_size, sigmas=_floats(a.sigmas, "--sigmas"))
    options = {k: v for k, v in (("device", a.device), ("threads", a.threads)) if v is not None}
    images, labels = generate.from_model(a.model, backend=a.backend, progress=not a.quiet, request=request,
                                         runtime_options=options)
    generate.save(Path(a.out), images, labels)
    print(f"wrote {len(images)} images to {a.out}")
    if a.eval:
        _print_eval(images, labels, as_json=False)


def _convert(a):
    from .converters import convert_model

    if a.delegate and a.backend != "executorch":
        raise InputError(f"--delegate applies to the executorch backend only, not {a.backend!r}")
    options = {"delegate": a.delegate} if a.delegate else {}
    art = convert_model(a.model, a.backend, Path(a.out), precision=a.precision, batch=a.batch, **options)
    parity = f"{art.parity_db:.1f} dB" if art.parity_db is not None else "not measured (needs macOS)"
    islands = art.op_coverage.get("islands")
    print(f"{art.backend} {art.precision} artifact in {art.path}: {art.size_bytes / 1e6:.2f} MB, parity {parity}"
          + (f", {islands} delegate island(s)" if islands is not None else ""))


def _bench(a):
    from . import bench

    bench.run(a.targets, out_dir=Path(a.out), device=a.device, threads=a.threads, warmup=a.warmup, iters=a.iters,
              progress=not a.quiet, compare=a.compare, fid=a.fid, isolate=not a.in_process)
    print((Path(a.out) / "report.md").read_text(), end="")


def _devices(a):
    from .converters import available

    for backend, devices in available().items():
        shown = ", ".join(devices) if isinstance(devices, list) and devices else devices or "none here"
        print(f"{backend:<11} {shown}")


def _eval(a):
    from . import generate

    images, labels = generate.read(Path(a.samples), a.labels)
    _print_eval(images, labels, as_json=a.json)


def _print_eval(images, labels, *, as_json: bool):
    from . import metrics

    result = metrics.evaluate(images, labels)
    print(json.dumps(result.to_dict(), indent=2) if as_json else result.to_text())


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, instead of usage + message
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="edgediff", description=__doc__)
    sub = p.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    i = sub.add_parser("info", help="shipped models: params, GFLOPs/step, sizes; installed runtimes")
    i.add_argument("--model", help="one model ('default', a shipped name or a directory)")
    i.add_argument("--json", action="store_true")
    i.set_defaults(fn=_info)

    t = sub.add_parser("train", help="train a denoiser from a model config (resumes from --out by default)")
    t.add_argument("--config", default="default", help="config.json, a model dir, or a shipped model name")
    t.add_argument("--out", required=True, help="output model directory (checkpoints live inside)")
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--precision", choices=["bf16", "fp32"])
    t.add_argument("--threads", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--data", help="mnist5k | mnist | path/to/image_folder")
    t.add_argument("--device", default="cpu")
    t.add_argument("--restart", action="store_true", help="ignore existing checkpoints in --out")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(fn=_train)

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
    r.add_argument("--precision", choices=["bf16", "fp32"])
    r.add_argument("--threads", type=int)
    r.add_argument("--device", default="cpu")
    r.add_argument("--restart", action="store_true", help="ignore existing checkpoints in --out")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(fn=_prune)

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
    k.add_argument("--method", default="cd", help="cd (consistency distillation) | trajectory (regression onto "
                   "the teacher's own ODE endpoints, solved up front into OUT/trajectories)")
    k.add_argument("--trajectories", type=int, default=8000, help="trajectory method: teacher trajectories")
    k.add_argument("--substeps", type=int, default=2, help="trajectory method: solver steps per Karras interval")
    k.add_argument("--top-fraction", type=float, default=0.25, help="trajectory method: batch share at σ_max")
    k.add_argument("--init", help="start from this consistency student's weights instead of the teacher's")
    k.add_argument("--precision", choices=["bf16", "fp32"])
    k.add_argument("--threads", type=int)
    k.add_argument("--device", default="cpu")
    k.add_argument("--restart", action="store_true", help="ignore existing checkpoints in --out")
    k.add_argument("--quiet", action="store_true")
    k.set_defaults(fn=_distill)

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
    u.set_defaults(fn=_tune_schedule)

    q = sub.add_parser("compress-report", help="int8/w8 variants of models beside fp32: FID-proxy, ms/step, MB")
    q.add_argument("--model", nargs="+", default=["default"], help="models to compare, the reference first")
    q.add_argument("--out", required=True, help="report dir (artifacts are built in OUT/artifacts)")
    q.add_argument("--fid", type=int, default=1000, help="samples per variant for FID-proxy (0: skip)")
    q.add_argument("--threads", type=int)
    q.add_argument("--no-naive", action="store_true", help="skip the random-input-calibrated int8 comparison")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(fn=_compress_report)

    pl = sub.add_parser("pipeline", help="the whole job: convert for every runtime, sample, bench, OUT/README.md")
    pl.add_argument("--model", default="default", help="the base model: 'default', a shipped name or a dir")
    pl.add_argument("--config", help="train a new base model from this config (config.json, model dir or shipped "
                    "name) instead of using --model")
    pl.add_argument("--train-steps", type=int, help="training steps for --config (default: the config's own)")
    pl.add_argument("--prune", type=float, default=0.0, metavar="RATIO",
                    help="prune this channel ratio from the base and recover it (0: use the shipped pruned variant "
                    "for comparison only)")
    pl.add_argument("--prune-steps", type=int, default=800, help="recovery fine-tuning steps after pruning")
    pl.add_argument("--distill-steps", type=int, default=0,
                    help="consistency-distil the (pruned) base for this many steps (0: the shipped student if any)")
    pl.add_argument("--targets", help="comma-separated subset of "
                    "executorch-fp32,executorch-int8,openvino-fp32,openvino-int8,coreml-fp16,coreml-palette6")
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
    pl.set_defaults(fn=_pipeline)

    m = sub.add_parser("train-metric", help="train the digit classifier behind FID-proxy")
    m.add_argument("--out", required=True)
    m.add_argument("--data", default="mnist5k")
    m.add_argument("--epochs", type=int, default=8)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--quiet", action="store_true")
    m.set_defaults(fn=_train_metric)

    s = sub.add_parser("sample", help="generate images with the shared sampler on a backend")
    s.add_argument("--model", default="default", help="'default', a shipped name, a model dir or an artifact dir")
    s.add_argument("--backend", default="auto", help="auto (eager for a model dir, the artifact's own backend)")
    s.add_argument("--device", help="runtime device, e.g. OpenVINO CPU/GPU/NPU/AUTO")
    s.add_argument("--threads", type=int)
    s.add_argument("--sampler", default="dpmpp_2m", help="euler | heun | dpmpp_2m | consistency")
    s.add_argument("--steps", type=int, default=10)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--n", type=int, default=100)
    s.add_argument("--label", type=int, help="class to draw (default: every class in turn, one grid row each)")
    s.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the model's)")
    s.add_argument("--sigmas", help="comma-separated σ schedule replacing the sampler's (steps+1 values, decreasing, "
                   "ending in 0); by default a model's tuned schedule is used at its recommended steps")
    s.add_argument("--batch-size", type=int, default=250)
    s.add_argument("--out", required=True, help="FILE.png (grid) or FILE.npy (float32 array + FILE.labels.npy)")
    s.add_argument("--eval", action="store_true", help="print FID-proxy, KID and label accuracy of the samples")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=_sample)

    c = sub.add_parser("convert", help="convert a model for a runtime into a parity-gated artifact dir")
    c.add_argument("--model", default="default")
    c.add_argument("--backend", required=True, help="executorch | openvino | coreml")
    c.add_argument("--precision", default="fp32", help="fp32 | fp16 | bf16 (what the backend supports)")
    c.add_argument("--delegate", help="ExecuTorch delegate: xnnpack (default) or coreml (lowering only)")
    c.add_argument("--batch", type=int, default=1, help="static batch size of the artifact")
    c.add_argument("--out", required=True)
    c.set_defaults(fn=_convert)

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
    b.set_defaults(fn=_bench)

    d = sub.add_parser("devices", help="what each runtime can use on this machine")
    d.set_defaults(fn=_devices)

    e = sub.add_parser("eval", help="FID-proxy, KID, real-vs-real floor, confidence of saved samples")
    e.add_argument("--samples", required=True, help="FILE.npy written by `edgediff sample`")
    e.add_argument("--labels", default="auto", help="FILE.npy of intended labels, 'auto' (sidecar) or 'none'")
    e.add_argument("--json", action="store_true")
    e.set_defaults(fn=_eval)
    return p


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.getLogger("torchao").setLevel(logging.ERROR)  # optional-kernel notices on import are not ours to show
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)  # backends' deprecation notices, not the user's
    logging.getLogger("nncf").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except EdgediffError as e:
        print(f"edgediff {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgediff {args.verb}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

