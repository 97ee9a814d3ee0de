"""Evidence files: uploaded photos, printouts and exports, stored once by their bytes, linked to what they prove."""
