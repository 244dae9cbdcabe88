"""Checks for the course's exercises: each compares a student's function with the package's own on hand-made and
random cases, and says what is wrong (a shape, a frame, an off-by-one at a boundary, a tie rule).

One module per stage the students build, named after it, each with check_* functions that take the student's
function, raise AssertionError with the message on the first case that disagrees, and return a one-line summary
of what passed. A NotImplementedError from the student's function (the exercise not done yet) goes through
unchanged. Used by the notebooks' check cells; see frcnn_edu.student for the student copies.
"""
