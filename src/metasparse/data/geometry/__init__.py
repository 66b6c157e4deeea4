"""data/geometry"""
