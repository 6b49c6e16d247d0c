"""d3hr_eval: the yardstick for distilled Fashion-MNIST sets (students, teacher, random real, tables).

Written apart from ``models/`` on purpose: nothing here imports the generator's code, so the
evaluation cannot move when the generator's preprocessing does. Run the tools as modules, e.g.
``python -m d3hr_eval.validate --help`` after ``pip install -e eval``.
"""
