"""Reference implementations and data makers shared by the tests and the benchmarks.

Deliberately simple (loops, no vectorisation): the fast code is checked
against them. Nothing here is needed to use the library.

- :mod:`.naive_events`: the event window rules, one event at a time.
- :mod:`.synthetic_reference`: the rows :func:`torchrl_ext.synthetic.write_synthetic` writes.
- :mod:`.crowdplay_maker`, :mod:`.crowdplay_reference`: CrowdPlay-layout datasets from real
  ALE frames, and CrowdPlay's frame buffer written from its published definition.
"""
