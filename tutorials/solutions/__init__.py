"""Solutions of the tutorials' checked exercises: ``nbNN.SOLUTIONS = {"NN.k": answer}``.

``tests/test_exercises.py`` runs each through ``ds2ta_ref.exercises.check``, the check the notebook uses.
Try the exercise before reading its solution.
"""
