"""meta/problems"""
