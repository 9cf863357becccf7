"""Layer tar streams: parsing entries as they stream past, whiteouts, union views."""
