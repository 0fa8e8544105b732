"""Results: the grade sheet and its journal (:mod:`.sheet`), what a late arrival costs (:mod:`.late`), marks on
written answers (:mod:`.marks`), the pages and CSV an instructor opens (:mod:`.report`, :mod:`.spreadsheet`)
and the LMS gradebook import (:mod:`.export`)."""
