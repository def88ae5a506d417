"""Beam pipeline options from a command line, passed through to the runner unchanged and checked.

``fcn-keras predict ... --beam ARGS`` and ``fcn-keras data prepare ... --beam ARGS``
hand ``ARGS`` to :func:`pipeline_options`: any option a Beam runner knows
(``--runner DataflowRunner --project P --region R --temp_location gs://...``,
``--runner FlinkRunner --flink_master host:8081``, ``--direct_num_workers 2``, ...)
goes to :class:`~apache_beam.options.pipeline_options.PipelineOptions` as
given. Beam itself drops what it does not recognise with a log warning; here an
unknown option is an error, so that a misspelt option, or one of fcn-keras's own
placed after ``--beam``, is never silently ignored. Without ``--runner`` the
pipeline runs on the DirectRunner, in this process.

Example:
    >>> pipeline_options(["--runner", "FlinkRunner", "--flink_master", "localhost:8081"]).get_all_options()["runner"]
    'FlinkRunner'
    >>> pipeline_options(["--out", "masks"])
    Traceback (most recent call last):
    ...
    ValueError: unknown Beam pipeline option --out (everything after --beam goes to Beam; fcn-keras's own options go before --beam)
"""

from __future__ import annotations

from typing import Sequence

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions


def pipeline_options(args: Sequence[str] = ()) -> PipelineOptions:
    """``PipelineOptions`` of ``args``, refusing any argument no Beam options class defines; DirectRunner by default.

    Example:
        >>> pipeline_options([]).view_as(StandardOptions).runner
        'DirectRunner'
    """
    args = [str(a) for a in args]
    unknown: list[str] = []

    def check(parser) -> None:  # Beam's own parser of every registered options class, before it drops anything
        unknown.extend(parser.parse_known_args(args)[1])

    options = PipelineOptions(args)
    options.get_all_options(add_extra_args_fn=check, retain_unknown_options=True)
    if unknown:
        names = [a for a in unknown if a.startswith("-")] or unknown
        raise ValueError(f"unknown Beam pipeline option{'s' if len(names) > 1 else ''} {' '.join(names)} "
                         f"(everything after --beam goes to Beam; fcn-keras's own options go before --beam)")
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = "DirectRunner"
    return options
