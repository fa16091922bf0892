"""Results table and plots for a sweep.

  python -m experiments.report --sweep_dir=runs/kws_cells --out=results/kws_cells

writes results/kws_cells.{md,csv,json} and results/kws_cells_{curves,params}.png (see
rnnbench/report.py). `--reference=hello_edge` adds the published Hello Edge accuracies as a
reference column (keyword-spotting sweeps only). A half-finished sweep still gets its table,
with n < expected and the runs without results named; the warnings go to stderr too.
"""

import sys

from absl import app, flags

_SWEEP_DIR = flags.DEFINE_string("sweep_dir", None, "Sweep directory (sweep.json + run dirs).")
_OUT = flags.DEFINE_string("out", None, "Output path without extension, e.g. results/kws_cells.")
_REFERENCE = flags.DEFINE_enum("reference", None, ["hello_edge"],
                               "Published numbers to show beside the table.")
flags.mark_flags_as_required(["sweep_dir", "out"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from rnnbench import report as report_lib
    sweep_dir, out, reference = _SWEEP_DIR.value, _OUT.value, _REFERENCE.value
    try:
        rep = report_lib.make_report(
            sweep_dir, out, reference=reference,
            report_command=report_lib.report_command(sweep_dir, out, reference))
    except (report_lib.ReportError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for w in rep["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print(f"{len(rep['rows'])} configurations, {rep['num_done']}/{rep['num_runs']} runs "
          f"finished -> {', '.join(rep['files'].values())}")
    return 0


if __name__ == "__main__":
    app.run(main)
