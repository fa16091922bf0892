"""Results table and plots for a sweep.

  python -m experiments.report --sweep_dir=runs/kws_cells --out=results/kws_cells
  python -m experiments.report --from_json=results/kws_cells.json   # re-render, no run dirs

writes results/kws_cells.{md,csv,json} and results/kws_cells_{curves,params}.png (see
rnnbench/report.py). `--reference=hello_edge` adds the published Hello Edge accuracies as a
reference column (keyword-spotting sweeps only). A half-finished sweep still gets its table,
with n < expected and the runs without results named; the warnings go to stderr too.
`--from_json` re-writes a table's .md, .csv and .json from its JSON alone (the plots need the
runs and are left as they are); `python -m experiments.reproduce NAME --render_only` does the
same with NAME's reproduce command and runner settings in the header.
"""

import sys

from absl import app, flags

_SWEEP_DIR = flags.DEFINE_string("sweep_dir", None, "Sweep directory (sweep.json + run dirs).")
_OUT = flags.DEFINE_string("out", None, "Output path without extension, e.g. results/kws_cells.")
_REFERENCE = flags.DEFINE_enum(
    "reference", None, ["hello_edge"], "Published numbers to show beside the table."
)
_FROM_JSON = flags.DEFINE_string(
    "from_json",
    None,
    "Re-render this report JSON's .md, .csv and "
    ".json (e.g. results/kws_cells.json) instead of reading a sweep.",
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from rnnbench import report as report_lib

    if _FROM_JSON.value:
        if _SWEEP_DIR.value or _OUT.value or _REFERENCE.value:
            raise app.UsageError(
                "--from_json re-renders a saved report: it takes no "
                "--sweep_dir, --out or --reference"
            )
        try:
            rep = report_lib.rerender(_FROM_JSON.value)
        except report_lib.ReportError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"re-rendered {rep['files']['md']}, {rep['files']['csv']}, {rep['files']['json']}")
        return 0
    if not (_SWEEP_DIR.value and _OUT.value):
        raise app.UsageError("expected --sweep_dir=DIR --out=PATH (or --from_json=FILE.json)")
    sweep_dir, out, reference = _SWEEP_DIR.value, _OUT.value, _REFERENCE.value
    try:
        rep = report_lib.make_report(
            sweep_dir,
            out,
            reference=reference,
            report_command=report_lib.report_command(sweep_dir, out, reference),
        )
    except (report_lib.ReportError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for w in rep["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print(
        f"{len(rep['rows'])} configurations, {rep['num_done']}/{rep['num_runs']} runs "
        f"finished -> {', '.join(rep['files'].values())}"
    )
    return 0


if __name__ == "__main__":
    from rnnbench import errors

    errors.run(main)
