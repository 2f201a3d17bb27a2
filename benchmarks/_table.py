# Licensed under a 3-clause BSD style license - see LICENSE
"""A reStructuredText simple table, shared by the benchmark scripts."""


def rst_table(lines):
    """Format rows of strings (the first is the header) as an RST table."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    rule = '  '.join('=' * width for width in widths)
    body = ['  '.join(cell.ljust(width)
                      for cell, width in zip(line, widths, strict=True)).rstrip()
            for line in lines]
    return '\n'.join([rule, body[0], rule, *body[1:], rule])
