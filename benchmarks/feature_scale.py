"""Mean/std of the ImageNet VGG-19 style-layer activations on the packed shared data (.devdata, see scripts/pack_images.py)."""
import numpy as np, jax, jax.numpy as jnp, glob
from PIL import Image
from jaxstyle import pretrained, vgg
enc = pretrained.load_vgg19_imagenet()
m = vgg.VGG19(preprocess="caffe", formulation="xla")
files = sorted(glob.glob(".devdata/content/*.jpg"))[::8] + sorted(glob.glob(".devdata/styles/*.jpg"))[::4]
imgs = []
for f in files:
    im = Image.open(f).convert("RGB"); w,h = im.size; s=min(w,h)
    im = im.crop(((w-s)//2,(h-s)//2,(w-s)//2+s,(h-s)//2+s)).resize((192,192))
    imgs.append(np.asarray(im, np.float32)/255)
x = jnp.asarray(np.stack(imgs))
f = jax.jit(lambda x: m.apply(enc, x))(x)
for k in vgg.STYLE_LAYERS:
    a = np.asarray(f[k]); print(k, "mean %.3f std %.3f" % (a.mean(), a.std()), "mean per-chan std mean %.3f" % a.std(axis=(1,2)).mean())
print(len(files), "images")
