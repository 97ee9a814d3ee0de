"""The registries: species, strains, plasmids, ingredients and their lots, equipment, suppliers, storage locations."""
