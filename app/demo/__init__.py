"""Demo data for `clinann demo`: synthetic notes written for this project, no patient data."""
