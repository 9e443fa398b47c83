"""bonito-ray: Bonito conditional task generation at cluster scale on Ray Data."""

__version__ = "0.1.0"
