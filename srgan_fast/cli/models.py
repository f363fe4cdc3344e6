"""`srgan-fast models`: the bundled models and their measured quality."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    m = sub.add_parser("models", help="list the bundled models and their measured quality")
    m.add_argument("--json", action="store_true", help="print the full model cards as JSON")
    m.add_argument("-q", "--quiet", action="store_true", help="only the table, without how to bring your own")
    m.set_defaults(func=run)


def run(args) -> int:
    from ..families import get_family
    from ..weights import bundled_models

    models = bundled_models()
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    if not models:
        print("no bundled models")
    else:
        sets = "Set5 PSNR/SSIM (texture) | Set14 PSNR/SSIM (texture)"
        print(f"| name | family | scale | layers x channels | {sets} | trained |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
    for m in models:
        if "error" in m:
            print(f"| {m['name']} | error: {m['error']} |")
            continue
        c, card = m["config"], m["card"]
        ev = card.get("eval", {})

        def cell(name, ev=ev):
            e = ev.get(name)
            if not e:
                return "-"
            tex = f" ({e['texture']:.2f})" if "texture" in e else ""  # srgan-fast eval's texture ratio
            return f"{e['psnr']:.2f} / {e['ssim']:.4f}{tex}"

        fam = m.get("family", "srresnet")
        try:
            describe = get_family(fam).describe
        except ValueError:
            describe = None
        shape, scale = describe(c) if describe else ("?", c.get("scale", "?"))
        print(
            f"| {m['name']} | {fam} | x{scale} | {shape} | "
            f"{cell('Set5')} | {cell('Set14')} | {card.get('trained', '-')} |"
        )
    if not args.quiet:
        print(_BRING_YOUR_OWN)
    return 0


_BRING_YOUR_OWN = """
Bring your own model (any command takes --model path.safetensors; nothing is registered or downloaded):
  * an SRResNet/SRGAN generator from another codebase (PyTorch .pth/.pt loaded with weights_only=True,
    or .safetensors; keys may differ if the layers are the paper's, with or without BN):
      srgan-fast convert their_generator.pth mine.safetensors [--output-range 0,1] [--module their.py:Class]
  * Real-ESRGAN's compact video models (SRVGGNetCompact: realesr-animevideov3, realesr-general-x4v3):
      srgan-fast convert realesr-animevideov3.pth animevideov3.safetensors
  * BasicSR's MSRResNet (x2/x4; params / params_ema checkpoints):
      srgan-fast convert msrresnet_x4.pth msrresnet.safetensors
  * ESRGAN / Real-ESRGAN's RRDBNet (RealESRGAN_x4plus; BasicSR, ESRGAN and old ESRGAN key layouts):
      srgan-fast convert RealESRGAN_x4plus.pth x4plus.safetensors
  * then: srgan-fast upscale IN -o OUT --model mine.safetensors   (also video, eval, bench, export)
  * to bundle one with the package, copy the .safetensors into srgan_fast/weights/ (its name becomes
    the model name); `srgan-fast export MODEL OUT.onnx` takes a model to ONNX Runtime/TensorRT."""
