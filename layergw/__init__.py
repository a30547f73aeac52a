"""layergw"""
