"""MIT-Princeton APC 2016 object segmentation frames with foreground masks (GENESIS-V2)."""
