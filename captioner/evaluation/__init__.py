"""Scoring captions: the COCO caption metrics, nltk BLEU, CIDEr-D in graph, CHAIR, and scoring a split.

    coco_eval.py   BLEU-1..4, METEOR, ROUGE-L, CIDEr-D as the COCO caption evaluation computes them
    metrics.py     nltk corpus BLEU, CIDEr-D on the caption tokenizer's words, genericness, Shapes figures
    cider.py       CIDEr-D over token ids, batched in graph (the self-critical reward)
    chair.py       CHAIR object hallucination
    scoring.py     captioning a split and scoring it with all of the above
"""
