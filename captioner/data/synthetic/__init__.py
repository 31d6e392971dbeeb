"""Data the project generates, so that every reader and model runs here without downloads.

    shapes.py        Shapes, the built-in captioning dataset (python -m captioner.data.synthetic.shapes ROOT)
    rehearsal.py     MS COCO 2014's layout and formats at full size (python -m captioner.data.synthetic.rehearsal OUT)
    flickr_tree.py   Flickr8k / Flickr30k-shaped trees from Shapes (python -m captioner.data.synthetic.flickr_tree OUT)
"""
