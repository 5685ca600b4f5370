"""`edgediff <verb>`: one library call per verb; bad input prints one line and exits 2 (over 300 lines: one short
handler per verb, kept in one place)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import edgediff
from edgediff.cli_parser import build_parser
from edgediff.errors import EdgediffError, InputError
from edgediff.format import images as images_io
from edgediff.format import model_dir, text_to_image_dir


def _info(a):
    from edgediff.measure import info

    names = [a.model] if a.model else model_dir.list_shipped()
    rows = [info.describe(n) for n in names]
    print(json.dumps(rows, indent=2) if a.json else info.format_table(rows))


def _train(a):
    from edgediff.training import distributed
    from edgediff.training import fit as train

    out = train.fit_model_config(model_dir.read_config_source(a.config), Path(a.out), resume=not a.restart,
                                 progress=not a.quiet, device=a.device, steps=a.steps, batch_size=a.batch_size,
                                 lr=a.lr, precision=a.autocast, threads=a.threads, seed=a.seed, data=a.data)
    if distributed.rank() == 0:  # under torchrun, one line from rank 0
        print(f"trained model written to {out}")


def _prune(a):
    from edgediff.training import prune

    cfg = prune.PruneConfig(ratio=a.ratio, importance=a.importance, round_to=a.round_to)
    out = prune.recover(a.model, Path(a.out), prune_config=cfg, steps=a.steps, lr=a.lr,
                        distill_weight=a.distill_weight, resume=not a.restart, progress=not a.quiet, device=a.device,
                        batch_size=a.batch_size, threads=a.threads, precision=a.autocast)
    print(f"pruned model written to {out}")


def _distill(a):
    from edgediff.format.diffusers_dir import is_diffusers
    from edgediff.training import distill, distill_text

    method = a.method or ("trajectory" if is_diffusers(a.model) else "cd")  # a diffusers teacher has no data here
    cfg = distill.DistillConfig(scales=a.scales, w_min=a.w_min, w_max=a.w_max, solver=a.solver, method=method,
                                trajectories=a.trajectories, substeps=a.substeps, top_fraction=a.top_fraction)
    text = model_dir.prompt_model(a.model)
    fn = distill_text.distill_text_model if text is not None and model_dir.is_text_model(text) else distill.distill
    out = fn(text or a.model, Path(a.out), config=cfg, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
             target_ema=a.target_ema, init=a.init, resume=not a.restart, progress=not a.quiet,
             device=a.device, threads=a.threads, precision=a.autocast, decay_steps=a.decay_steps)
    print(f"consistency student written to {out}")


def _tune_schedule(a):
    from edgediff.measure import tune

    t = tune.tune_sigmas(a.model, steps=a.steps, n=a.n, grid=a.grid, refine=a.refine, seeds=a.seeds,
                         progress=not a.quiet)
    print(f"{t.sampler} × {t.steps}: formula σ {list(t.start)} FID-proxy {t.fid_start:.2f}; "
          f"tuned σ {list(t.best)} FID-proxy {t.fid_best:.2f} ({t.n} samples, report seed)")
    if a.write:
        print(f"written to {tune.write(a.model, t)}")


def _compress_report(a):
    from edgediff.measure import compression

    path = compression.report(a.model, Path(a.out), fid=a.fid, threads=a.threads, naive=not a.no_naive,
                              progress=not a.quiet)
    print(path.read_text(), end="")


def _pipeline(a):
    from edgediff.workflow import pipeline

    folder = model_dir.prompt_model(a.model, default_text=a.task == "text-to-image")
    if a.task == "text-to-image" and folder is None:
        raise InputError(f"--task text-to-image takes a text-to-image model; {a.model} is not one (expected "
                         f"'default', {model_dir.DEFAULT_TEXT_MODEL}, an edgediff text-model directory or "
                         f"{text_to_image_dir.SUPPORTED})")
    if folder is not None and a.task != "image":
        return _pipeline_text_to_image(a, folder)
    if folder is not None:
        raise InputError(f"{a.model} is a text-to-image model; --task image takes a class-conditional image model")
    recipe = pipeline.Recipe(config=a.config, train_steps=a.train_steps, prune=a.prune, prune_steps=a.prune_steps,
                             distill_steps=a.distill_steps, threads=a.threads)
    targets = a.targets.split(",") if a.targets else None
    p = pipeline.plan(a.model, Path(a.out), student=None if a.student == "none" else a.student,
                      pruned=None if a.pruned == "none" else a.pruned, fid=a.fid, recipe=recipe, targets=targets,
                      n=a.n)
    stages = a.stages.split(",") if a.stages else pipeline.STAGES
    result = pipeline.run(p, stages=stages, progress=not a.quiet)
    print(f"done: {result}")


def _pipeline_text_to_image(a, folder):
    from edgediff.workflow import pipeline_text_to_image

    for flag, value in (("--config", a.config), ("--prune", a.prune or None), ("--distill-steps",
                                                                             a.distill_steps or None)):
        if value is not None:
            raise InputError(f"{flag} is not taken with a text-to-image folder (its pipeline converts, samples and "
                             f"benches the folder as it is)")
    targets = a.targets.split(",") if a.targets else None
    stages = a.stages.split(",") if a.stages else None
    result = pipeline_text_to_image.run(folder, Path(a.out), targets=targets, stages=stages, progress=not a.quiet)
    print(f"done: {result}")


def _floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{flag} {text!r} must be comma-separated numbers, e.g. 80,0.8,0") from None


def _train_metric(a):
    from edgediff.measure.metric_training import fit_metric

    result = fit_metric(Path(a.out), data=a.data, epochs=a.epochs, seed=a.seed, progress=not a.quiet)
    print(json.dumps(result, indent=2))


def _sample(a):
    from edgediff.format.configs import Request
    from edgediff.sampling.generate import recommended
    from edgediff.sampling.text_to_image import TextToImage

    if a.prompt is not None or a.negative_prompt is not None:
        return _sample_prompt(a)
    if model_dir.prompt_model(a.model) is not None:
        raise InputError(f"{a.model} is a text-to-image pipeline: it expects --prompt TEXT")
    asked = {"n": 100 if a.n is None else a.n, "seed": a.seed, "sampler": a.sampler, "steps": a.steps,
             "guidance": a.guidance, "label": a.label, "batch_size": a.batch_size,
             "sigmas": _floats(a.sigmas, "--sigmas"), "gamma": a.gamma}
    asked = {k: v for k, v in asked.items() if v is not None}
    Request(**asked)  # bad values fail here, before the model is loaded
    images_io.check_path(Path(a.out))  # a bad --out fails before anything is sampled
    model = edgediff.load(a.model, backend=a.backend, device=a.device, threads=a.threads)
    if isinstance(model, TextToImage):
        raise InputError(f"{model.name} is a text-to-image pipeline: it expects --prompt TEXT")
    request = recommended(model.sampler_defaults, **asked)
    if a.guidance == 1.0 and not model.num_classes:
        print(f"edgediff sample: warning: {model.name} is unconditional; --guidance 1 changes nothing", file=sys.stderr)
    if a.eval:
        from edgediff.measure.quality import check_measurable

        check_measurable(model.shape)  # before sampling: nothing is written when --eval cannot run
    images, labels = model.sample(request, progress=not a.quiet)
    edgediff.save(a.out, images, labels, class_names=model.class_names)
    print(f"wrote {len(images)} images to {a.out}")
    if a.eval:
        _print_eval(images, labels, as_json=False)


def _sample_prompt(a):
    from edgediff.sampling.text_to_image import TextToImage

    if a.prompt is None:
        raise InputError("--negative-prompt needs --prompt TEXT")
    for flag, value in (("--label", a.label), ("--sigmas", a.sigmas), ("--eval", a.eval or None)):
        if value is not None:
            raise InputError(f"{flag} is not taken with --prompt (a text-to-image pipeline draws what the prompt says)")
    if a.n is not None and a.n < 1:
        raise InputError(f"--n must be >= 1, got {a.n}")
    images_io.check_path(Path(a.out))
    decoder = {"decoder": a.decoder} if a.decoder else {}
    target = model_dir.prompt_model(a.model, default_text=True) or a.model  # no --model: the shipped text default
    model = edgediff.load(target, backend=a.backend, device=a.device, threads=a.threads, **decoder)
    if not isinstance(model, TextToImage):
        raise InputError(f"{a.model} is not a text-to-image pipeline; --prompt takes {model_dir.DEFAULT_TEXT_MODEL}, "
                         f"an edgediff text-model directory, a converted pipeline or a diffusers text-to-image "
                         f"folder (model_index.json with a text_encoder)")
    images = model.generate(prompt=a.prompt, negative_prompt=a.negative_prompt, n=a.n or 1, seed=a.seed,
                            steps=a.steps, guidance=a.guidance, sampler=a.sampler, gamma=a.gamma,
                            progress=not a.quiet)
    edgediff.save(a.out, images)
    print(f"wrote {len(images)} image{'s' * (len(images) > 1)} for {a.prompt!r} to {a.out}")


def _convert(a):
    options = {"delegate": a.delegate} if a.delegate else {}
    if a.external_weights:
        options["external_weights"] = True
    options.update({k: v for k in ("attention", "chunks") if (v := getattr(a, k)) is not None})
    if a.decoder:
        options["decoder"] = a.decoder
    if a.check_steps is not None:
        options["check_steps"] = a.check_steps
    art = edgediff.convert(a.model, backend=a.backend, out=Path(a.out), precision=a.precision, batch=a.batch,
                           **options)
    if isinstance(art, dict):  # a text-to-image pipeline artifact: one line per component
        return _print_pipeline(art, Path(a.out))
    parity = f"{art.parity_db:.1f} dB" if art.parity_db is not None else art.op_coverage.get("parity", "not measured")
    islands = art.op_coverage.get("islands")
    print(f"{art.backend} {art.precision} artifact in {art.path}: {art.size_bytes / 1e6:.2f} MB, parity {parity}"
          + (f", {islands} delegate island(s)" if islands is not None else ""))
    from edgediff.converters.parity import ungated_note

    note = ungated_note(art.precision, art.parity_db)
    if note:
        print(f"edgediff convert: warning: {note}", file=sys.stderr)


def _print_pipeline(manifest: dict, out: Path) -> None:
    from edgediff.converters.parity import ungated_note

    for name, c in manifest["components"].items():
        db = "not measured here" if c["parity_db"] is None else f"{c['parity_db']:.1f} dB"
        print(f"{name}: {c['backend']} {c['precision']}, parity {db}, converted in {c['convert_s']:.1f} s "
              f"(peak RSS {c['peak_rss_mb']:.0f} MB)")
        if note := ungated_note(c["precision"], c["parity_db"]):
            print(f"edgediff convert: warning: {name}: {note}", file=sys.stderr)
    e2e = manifest["end_to_end"]
    check = f"{e2e['psnr_db']:.1f} dB vs eager" if "psnr_db" in e2e else f"check skipped: {e2e['skipped']}"
    print(f"text-to-image pipeline artifact in {out}: image {check} ({manifest['name']})")


def _bench(a):
    edgediff.bench(a.targets, out=a.out, device=a.device, threads=a.threads, warmup=a.warmup, iters=a.iters,
                   progress=not a.quiet, compare=a.compare, fid=a.fid, isolate=not a.in_process)
    print((Path(a.out) / "report.md").read_text(), end="")


def _devices(a):
    from edgediff.converters import available

    for backend, devices in available().items():
        shown = ", ".join(devices) if isinstance(devices, list) and devices else devices or "none here"
        print(f"{backend:<11} {shown}")


def _eval(a):
    from edgediff.measure import quality, quality_emoji

    if a.prompt is not None and a.prompts is not None:
        raise InputError("give --prompt TEXT (one for all samples) or --prompts FILE.txt, not both")
    images, labels = images_io.read(Path(a.samples), a.labels)
    prompts = a.prompt if a.prompts is None else images_io.read_prompts(Path(a.prompts))
    if images.ndim == 4 and images.shape[1:] == quality.RGB_SHAPE:
        result = quality_emoji.evaluate_emoji(images, prompts)
        print(json.dumps(result.to_dict(), indent=2) if a.json else result.to_text())
        return
    if prompts is not None:
        raise InputError(f"--prompt/--prompts score colour [N,{','.join(map(str, quality.RGB_SHAPE))}] samples of a "
                         f"text-to-image model; {a.samples} holds {list(images.shape)} (digits take --labels)")
    _print_eval(images, labels, as_json=a.json)


def _print_eval(images, labels, *, as_json: bool):
    from edgediff.measure import quality as metrics

    result = metrics.evaluate(images, labels)
    print(json.dumps(result.to_dict(), indent=2) if as_json else result.to_text())


VERBS = {"info": _info, "train": _train, "prune": _prune, "distill": _distill, "tune-schedule": _tune_schedule,
         "compress-report": _compress_report, "pipeline": _pipeline, "train-metric": _train_metric,
         "sample": _sample, "convert": _convert, "bench": _bench, "devices": _devices, "eval": _eval}


def _one_line_notices(verb: str) -> list[str]:
    """Collect edgediff's own notices (what it assumed or left out); `main` prints them, one stderr line each,
    when the verb succeeds (a failing verb answers with its one error line only)."""
    import warnings

    from edgediff.errors import EdgediffWarning

    notes: list[str] = []

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, EdgediffWarning):
            notes.append(f"edgediff {verb}: note: {message}")
        else:
            shown(message, category, filename, lineno, file, line)

    shown = warnings.showwarning
    warnings.showwarning = show
    warnings.simplefilter("always", EdgediffWarning)
    return notes


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.getLogger("torchao").setLevel(logging.ERROR)  # optional-kernel notices on import are not ours to show
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)  # torchao's Enum registrations (via diffusers)
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)  # backends' deprecation notices, not the user's
    logging.getLogger("nncf").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    notes = _one_line_notices(args.verb)
    try:
        VERBS[args.verb](args)
        for note in dict.fromkeys(notes):
            print(note, file=sys.stderr)
    except EdgediffError as e:
        print(f"edgediff {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgediff {args.verb}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

