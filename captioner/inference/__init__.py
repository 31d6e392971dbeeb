"""Using a trained model: captioning folders, attention figures, exported models.

    captioning.py   captioning a folder of people's images, streaming results to a file
    figures.py      attention figures (a caption word by word over the image)
    savedmodel.py   a SavedModel with an image-bytes-to-captions signature
"""
