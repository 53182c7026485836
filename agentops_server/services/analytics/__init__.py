"""Analytics: rollups kept by derived work, and what the analytics APIs read from them.

- :mod:`.rollups`: the hourly and daily rollups and the tasks that keep them (a subpackage).
- :mod:`.histogram`: the latency histograms in them.
- :mod:`.reading`: ranges, totals and series read from rollups.
- :mod:`.kpis`, :mod:`.trends`, :mod:`.costs`, :mod:`.reports`: the answers of the APIs.
"""
