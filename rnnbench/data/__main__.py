"""Dataset statistics: ``python -m rnnbench.data describe NAME [--data_dir=DIR] [--json]``.

Prints, per split, the number of examples, examples per class (CTC: word counts of the
transcripts), examples per intent where the corpus has meanings (synth_phrases) and the total
duration; a synthetic corpus not yet cached is built first. ``--json`` prints the same as
JSON; ``--output=PATH`` also writes it to a file.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys

from rnnbench import atomic
from rnnbench.data import NAMES, Dataset, load


def describe(ds: Dataset) -> dict:
    """-> {"name", "task", "classes", "splits": {split: {...}}}.

    Per split: examples, per_class, duration_s, speakers; splits with meanings also get
    "per_intent": {intent: examples}.
    """
    out = {
        "name": ds.name,
        "task": ds.task,
        "sample_rate": ds.sample_rate,
        "classes": list(ds.classes),
        "splits": {},
    }
    for s, sp in ds.splits.items():
        if ds.task == "classify":
            counts = collections.Counter(int(l) for l in sp.labels)
            per_class = {c: counts.get(i, 0) for i, c in enumerate(ds.classes)}
        else:
            per_class = dict(
                sorted(collections.Counter(w for t in sp.transcripts for w in t.split()).items())
            )
        out["splits"][s] = {
            "examples": len(sp.audio),
            "per_class": per_class,
            "duration_s": round(sum(a.shape[0] for a in sp.audio) / ds.sample_rate, 2),
            "speakers": len(set(sp.speakers)),
        }
        if sp.meanings is not None:
            out["splits"][s]["per_intent"] = dict(
                sorted(collections.Counter(m["intent"] for m in sp.meanings).items())
            )
    return out


def _print(info: dict) -> None:
    print(
        f"{info['name']} ({info['task']}, {len(info['classes'])} "
        f"{'classes' if info['task'] == 'classify' else 'symbols'})"
    )
    for s, d in info["splits"].items():
        print(
            f"  {s}: {d['examples']} examples, {d['duration_s'] / 3600:.3f} h "
            f"({d['duration_s']:.1f} s), {d['speakers']} speakers"
        )
        print("    " + ", ".join(f"{k}: {v}" for k, v in d["per_class"].items()))
        if "per_intent" in d:
            print("    intents: " + ", ".join(f"{k}: {v}" for k, v in d["per_intent"].items()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m rnnbench.data", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("describe", help="print per-split statistics of a dataset")
    d.add_argument("name", choices=NAMES)
    d.add_argument("--data_dir", default=None)
    d.add_argument("--protocol", type=int, default=12, choices=(12, 35))
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--cache_dir", default=None)
    d.add_argument(
        "--split", default=None, help="fsdd: official | speakers; synth_phrases: voices | phrasings"
    )
    d.add_argument("--train_size", type=int, default=None)
    d.add_argument("--validation_size", type=int, default=None)
    d.add_argument("--test_size", type=int, default=None)
    d.add_argument("--json", action="store_true", help="print JSON instead of text")
    d.add_argument("--output", default=None, help="also write the JSON to this file")
    args = p.parse_args(argv)
    options = {
        k: v
        for k in ("split", "train_size", "validation_size", "test_size")
        if (v := getattr(args, k)) is not None
    }
    try:
        ds = load(
            args.name,
            data_dir=args.data_dir,
            protocol=args.protocol,
            seed=args.seed,
            cache_dir=args.cache_dir,
            **options,
        )
    except (ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info = describe(ds)
    if args.output:
        atomic.write_json(args.output, info)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
