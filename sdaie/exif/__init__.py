"""EXIF supervision: read canonical tags (``container``, ``reader``), turn them into labels
(``schema``), and index a photo folder for training (``index`` runs ``scan``, ``parse``,
``crops``, ``journal`` and ``summary``; ``store`` reads an index back). Commands: ``sdaie exif``
(``cli``) and ``sdaie index``."""
