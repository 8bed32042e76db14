"""newproxy's IO edges: the HTTP/1.1 front end, the upstream client, the listening server."""
