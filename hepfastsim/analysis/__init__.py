"""Analysis building blocks on reco jets: the dijet selection and the dijet-mass fit."""
