# sender.py

from socketio import Client

socketio = Client()
socketio.connect("http://localhost:5000")


while True:
  message = input("message to send : ")
  socketio.emit("message", message)
