#!/bin/sh
# Installs nginx with the configuration the file provisioner uploaded to
# /tmp/nginx.conf, and enables it at boot. Run by recipes/web-ami.bake.hcl
# on the builder instance as ec2-user; APP_VERSION comes from the recipe.
set -eu

sudo dnf -y install nginx
sudo install -o root -g root -m 0644 /tmp/nginx.conf /etc/nginx/nginx.conf
rm -f /tmp/nginx.conf
sudo nginx -t
echo "web ${APP_VERSION}" | sudo tee /usr/share/nginx/html/version.txt >/dev/null
sudo systemctl enable nginx

# Leave no build traces in the image.
sudo dnf clean all
sudo rm -rf /var/log/nginx/*
