"""The aiohttp web application: the page, the JSON API and the workers' status callback."""
