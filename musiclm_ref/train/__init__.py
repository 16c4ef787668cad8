"""Training of the reference MusicLM's pieces, one module per trainer, each ``train_X(data, out, cfg) -> manifest entry``
(codec, semantic, stages, melody, mulan; the stage loop itself is ``stage.fit_stage``). The models live one level up."""
