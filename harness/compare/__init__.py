"""Comparing runs: ``harness compare`` and ``harness baseline``, one role per module.

    mannwhitney.py  the two-sided Mann-Whitney U test (pure)
    stats.py        tolerances and verdicts, metric by metric (pure)
    hardware.py     hardware identities: keys, differences, one machine per side
    sides.py        what the user names (runs, summary files, baseline files) read into sides,
                    grouped by scenario; the baseline file format
    judge.py        two sides paired scenario by scenario and judged
    output.py       the text table and the JSON comparison document
    store.py        the baseline store: ./baselines/<hardware-key>/<name>.json
    commands.py     the commands themselves, called by ``harness.commands``

The package imports nothing itself, so that the pure modules come without the I/O ones.
"""
