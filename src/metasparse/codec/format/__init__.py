"""codec/format"""
