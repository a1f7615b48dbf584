"""The discovery loop: labels a scientist gives objects (:mod:`~hyrax.discovery.labels`) and a ranking that
learns from them (:mod:`~hyrax.discovery.rank`)."""
